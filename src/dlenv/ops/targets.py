"""Resolve where a command runs: a dlenv environment NAME or any box given as --host USER@HOST.

`jupyter`, `smoke-test` and `provision` all accept both forms; a stopped environment is started
(after confirmation) so one command takes the user from "it auto-stopped" back to work.
"""

from __future__ import annotations

from dlenv.config import Settings
from dlenv.errors import UsageError
from dlenv.ssh.target import SshTarget, from_host_flag
from dlenv.terminal import Terminal


def resolve_target(
    name: str | None,
    host: str | None,
    identity: str | None,
    settings: Settings,
    terminal: Terminal,
    *,
    yes: bool,
    trust_new_host_key: bool = False,
) -> tuple[str, SshTarget]:
    """(display name, SshTarget); a stopped environment is started after confirmation.

    A `--host` box's key is checked here, by dlenv's one host-key policy, before any OpenSSH
    call (asked about on a terminal, recorded with `trust_new_host_key`, else refused).
    """
    if bool(name) == bool(host):
        raise UsageError(
            "give an environment NAME or --host USER@HOST (one of them)",
            "e.g. `dlenv jupyter mybox` or `dlenv jupyter --host ubuntu@10.0.0.5 -i key`",
        )
    if host:
        from dlenv.ssh.openssh import prepare

        target = from_host_flag(host, identity, settings.ssh_proxy_command)
        prepare(target, trust_new=trust_new_host_key, say=terminal.info)
        return target.label, target
    assert name is not None  # exactly one of NAME and --host: checked above
    from dlenv.cloud import instances
    from dlenv.cloud.session import from_settings
    from dlenv.ops import lifecycle, power

    aws = from_settings(settings)
    env = instances.get(aws, name)
    if env.state in {"stopped", "stopping"}:
        if not terminal.confirm(
            f"{name} is {env.state}. Start it ({env.instance_type})?", assume_yes=yes
        ):
            raise UsageError(f"{name} is stopped", f"start it with `dlenv start {name}`")
        env = power.start(name, settings, terminal)
        target = lifecycle.ready_for_ssh(aws, name, env, settings, terminal, wait_ssh=True)
        return name, target
    return name, lifecycle.target_of_running(name, settings, terminal)
