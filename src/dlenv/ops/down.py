"""`dlenv down NAME`: remove everything of one environment, and say what remains if stopped.

AWS goes first (instances, then the security group once no interface holds it, then the key
pair), then this machine's files (private key, known_hosts, ssh config entry), each local step
on its own so a corrupt file costs one warning line. An interrupt says what is left, from what
AWS holds or, failing that, from what this `down` had found and done. A cluster's `down` is
`dlenv.ops.cluster_up.down`; `delete_group_when_free` serves it and the launch rollbacks too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dlenv.config import Settings
from dlenv.errors import DlenvError, NotFoundError
from dlenv.ops.lifecycle import local_key, say_remains, validate_name
from dlenv.terminal import Terminal

if TYPE_CHECKING:
    from dlenv.cloud.session import Aws


@dataclass
class DownResult:
    instance: str | None
    security_group: bool
    key_pair: bool
    ssh_entry: bool
    instances: list[str] = field(default_factory=list)
    """Every instance terminated (more than one only after a race for the name)."""
    local_key: bool = False
    warnings: list[str] = field(default_factory=list)
    """Local clean-up steps that failed (a corrupt file), each already said in one line."""


def down(
    name: str, settings: Settings, terminal: Terminal, *, keep_key: bool = False
) -> DownResult:
    """Remove everything of NAME: instances, group, key pair, local key, ssh entries.

    Runs under the environment's lock (an `up` of NAME in progress finishes first). AWS goes
    first; each local step is separate, so a corrupt known_hosts or include costs one warning
    line naming the file, never the rest of the job. The ssh config entry goes last: while
    anything is left, a rerun still finds NAME and finishes. An interrupt says what remains.
    """
    from dlenv.cloud.session import from_settings
    from dlenv.statefile import env_lock

    validate_name(name)
    aws = from_settings(settings)
    with env_lock(name, say=terminal.info):
        seen: dict[str, Any] = {"footprint": None, "done": set()}
        try:
            return _down(aws, name, terminal, keep_key, seen)
        except KeyboardInterrupt:
            say_remains(aws, name, terminal, lambda: _down_believed(name, seen))
            raise


def _down(
    aws: Aws, name: str, terminal: Terminal, keep_key: bool, seen: dict[str, Any]
) -> DownResult:
    from dlenv.cloud import instances, keys, launch
    from dlenv.ssh import config as sshconfig
    from dlenv.ssh import known_hosts

    warnings: list[str] = []

    def warn(line: str) -> None:
        terminal.warn(line)
        warnings.append(line)

    seen["footprint"] = found = launch.footprint(aws, name)
    done: set[str] = seen["done"]
    entry = _local_step(
        terminal,
        warnings,
        "read the ssh config include",
        sshconfig.include_path,
        lambda: sshconfig.has_entry(name),
    )
    seen["entry"] = bool(entry)
    if not (found.instances or found.key_pair or found.security_group or entry):
        raise NotFoundError(
            f"no environment named {name!r} in {aws.region_name}",
            "`dlenv status` lists your environments (check --region)",
        )
    ids = [e.instance_id for e in found.instances]
    if ids:
        with terminal.phase(f"terminating {name} ({', '.join(ids)})"):
            instances.terminate(
                aws, found.instances, requested=lambda ids: seen.update(terminating=set(ids))
            )
            for ident in ids:
                instances.wait(aws, "instance_terminated", ident)
                done.add(ident)
    sg_deleted = False
    if found.security_group:
        sg_deleted = delete_group_when_free(aws, name, group_id=found.security_group)
        done.add("security group")
    key_deleted = local_deleted = False
    home = keys.home_region(name)
    if found.key_pair and not keep_key and home not in (None, aws.region_name):
        # this machine's key serves NAME in `home`: only this region's key pair goes
        terminal.note(f"kept the local key of {name}: it serves {name} in {home}")
        key_deleted = keys.delete_key_pair(aws, name, keep_local=True)
        done.update({"local key", "key pair"})
    elif found.key_pair and not keep_key:
        # the local key first: an interrupt between the two leaves the EC2 key pair, which a
        # rerun finds (a local key alone might serve NAME in another region: never touched)
        local_deleted = bool(
            _local_step(
                terminal,
                warnings,
                "delete the private key",
                lambda: keys.private_key_path(name),
                lambda: keys.delete_local_key(name),
            )
        )
        done.add("local key")
        key_deleted = keys.delete_key_pair(aws, name, keep_local=True)
        done.add("key pair")
    _local_step(
        terminal,
        warnings,
        f"remove dlenv-{name} from known_hosts",
        known_hosts.dlenv_known_hosts,
        lambda: known_hosts.remove_host(f"dlenv-{name}"),
    )
    removed_entry = bool(
        _local_step(
            terminal,
            warnings,
            f"remove Host dlenv-{name} from the ssh config include",
            sshconfig.include_path,
            lambda: sshconfig.remove_entry(name, warn=warn),
        )
    )
    done.add("entry")
    return DownResult(
        ids[0] if ids else None,
        sg_deleted,
        key_deleted,
        removed_entry,
        instances=ids,
        local_key=local_deleted,
        warnings=warnings,
    )


def _local_step(terminal: Terminal, warnings: list[str], what: str, path: Any, step: Any) -> Any:
    """Run one local clean-up step; a bad file becomes one warning line naming it, not a stop.

    Returns the step's value, or None when it failed.
    """
    from dlenv.errors import StateFileError

    try:
        return step()
    except StateFileError as exc:
        reason = exc.one_line()
        fix = exc.hint or "fix or remove that file"
    except (OSError, ValueError) as exc:  # ValueError: UnicodeDecodeError of a corrupt file
        try:
            where = str(path())
        except Exception:
            where = "its file"
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        reason = f"{where}: {detail}"
        fix = f"fix or remove {where}"
    line = f"could not {what} ({reason}); {fix}"
    terminal.warn(line)
    warnings.append(line)
    return None


def _down_believed(name: str, seen: dict[str, Any]) -> list[str]:
    """What may remain after an interrupted `down`, from what it had found and done."""
    found, done = seen["footprint"], seen["done"]
    if found is None:
        return [f"everything of {name} (the interrupt came before AWS answered)"]
    left = [
        f"instance {e.instance_id} "
        + (
            "(termination requested)"
            if e.instance_id in seen.get("terminating", ())
            else f"({e.state})"
        )
        for e in found.instances
        if e.instance_id not in done
    ]
    if found.security_group and "security group" not in done:
        left.append(f"security group {found.security_group}")
    if found.key_pair and "key pair" not in done:
        left.append(f"key pair {found.key_pair}")
    path = local_key(name)
    if path is not None and "local key" not in done:
        left.append(f"private key {path}")
    if seen.get("entry") and "entry" not in done:
        left.append(f"ssh config entry dlenv-{name}")
    return left


def delete_group_when_free(
    aws: Aws, name: str, timeout: float = 180, *, group_id: str | None = None
) -> bool:
    """Delete the SG, retrying while EC2 still reports the terminated instance's ENI on it.

    Bounded by `timeout`: after that the DependencyViolation is raised (the caller says the
    group remains, and `dlenv down` removes it later).
    """
    from dlenv.cloud import network
    from dlenv.cloud.aws_errors import error_code

    deadline = time.monotonic() + timeout
    while True:
        try:
            return network.delete_group(aws, name, group_id)
        except DlenvError as exc:
            # the AWS error's own code (cloud/ keeps botocore's exception as the cause)
            code = error_code(exc.__cause__) if exc.__cause__ else None
            if code != "DependencyViolation" or time.monotonic() > deadline:
                raise
            time.sleep(5)
