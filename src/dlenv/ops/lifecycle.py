"""What several commands share about one environment; each command's own work is elsewhere.

Here: the name rule (`validate_name`), the stack fingerprint and the tags an environment carries
(`env_tags`, its recorded choices: `with_env_choices`, `record_choices`), the image and launch
spec (`choose_image`, `launch_spec`, `root_device`), its SSH target and the wait for SSH
(`env_target`, `ready_for_ssh`, `target_of_running`), and the "remains:" line of an interrupted
launch or removal (`say_remains`). `up` (ops/up.py), `up --nodes` (ops/cluster_up.py), `down`
(ops/down.py), `stop`/`start` (ops/power.py), `start --move`, `provision`, `sync`, `budget`,
`jupyter` and `ami bake` build on them. `allow_ip` (the `allow-ip` command: one rule change
under the lock) lives here too, being too small for a module of its own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlenv.config import Settings
from dlenv.errors import DlenvError, NotFoundError, UsageError
from dlenv.terminal import Terminal

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import TagTypeDef

    from dlenv.cloud import ami, catalog, launch
    from dlenv.cloud.instances import Environment
    from dlenv.cloud.session import Aws
    from dlenv.ssh.target import SshTarget

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$|^[a-z]$")


def validate_name(name: str) -> str:
    """NAME as given, or one line saying the rule: it becomes tags, a key file name and an
    ssh Host alias (`dlenv-NAME`), so only what is safe in all of them passes."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):  # match+$ accepted "x\n"
        raise UsageError(
            f"environment name {name!r} is not valid",
            "use 1-40 lowercase letters, digits and dashes, starting with a letter (e.g. mybox)",
        )
    return name


def stack_fingerprint() -> str:
    """The stack fingerprint that tags instances (the provisioning manifest's hash)."""
    from dlenv.provision.manifest import load_stack

    return load_stack().fingerprint


# An environment's own choices, recorded as instance tags: later `up`/`provision` runs (from any
# machine) keep them unless a flag on that command says otherwise.
CHOICE_TAGS = {
    "python": "dlenv:python",
    "idle_stop": "dlenv:idle-stop",
    "frameworks": "dlenv:frameworks",
}


def _tag_value(value: Any) -> str:
    """A choice as a tag value: lists comma-separated (config reads them back that way)."""
    return ",".join(value) if isinstance(value, (list, tuple)) else str(value)


def env_tags(
    name: str, user: str, os_name: str, stack: str, settings: Settings | None = None
) -> list[TagTypeDef]:
    from dlenv.cloud.instances import TAG_NAME, TAG_OS, TAG_STACK, TAG_USER
    from dlenv.ops.sync import TAG_WORK

    tags: list[TagTypeDef] = [
        {"Key": TAG_NAME, "Value": name},
        {"Key": TAG_STACK, "Value": stack},
        {"Key": "Name", "Value": f"dlenv-{name}"},
        {"Key": TAG_USER, "Value": user},
        {"Key": TAG_OS, "Value": os_name},
        # no work directory yet: `down` has nothing to check until provisioning or a sync
        {"Key": TAG_WORK, "Value": "none"},
    ]
    if settings is not None:
        tags += [
            {"Key": tag, "Value": _tag_value(getattr(settings, attr))}
            for attr, tag in CHOICE_TAGS.items()
        ]
    return tags


def with_env_choices(settings: Settings, env_tags: dict[str, str], terminal: Terminal) -> Settings:
    """Settings where the environment's recorded choices replace anything but an explicit flag."""
    from dlenv import config

    for attr, tag in CHOICE_TAGS.items():
        if tag not in env_tags:
            continue
        recorded = config.coerce(attr, env_tags[tag], f"tag {tag}")
        if attr == "frameworks":  # a tag is anyone's to write: only the stack's own names
            from dlenv.provision.options import check_frameworks

            check_frameworks(recorded)
        if settings.sources.get(attr, "").startswith("--"):
            if getattr(settings, attr) != recorded:
                terminal.warn(
                    f"{attr} changes from {recorded} (recorded on the environment) to "
                    f"{getattr(settings, attr)}"
                )
            continue
        setattr(settings, attr, recorded)
        settings.sources[attr] = f"tag {tag}"
    return settings


def record_choices(name: str, settings: Settings, instance_id: str | None = None) -> None:
    """Tag the environment with the choices it was provisioned with (the id saves a lookup)."""
    from dlenv.cloud import instances
    from dlenv.cloud.session import from_settings
    from dlenv.ops.sync import TAG_WORK

    aws = from_settings(settings)
    instance_id = instance_id or instances.get(aws, name).instance_id
    tags = {tag: _tag_value(getattr(settings, attr)) for attr, tag in CHOICE_TAGS.items()}
    tags[TAG_WORK] = "yes"  # provisioned: `down` checks ~/work first
    instances.tag(aws, [instance_id], tags)


def local_key(name: str) -> Path | None:
    """NAME's private key file when it is there; None also when the key dir is unusable
    (this only feeds the "what remains" line, which must never fail itself)."""
    from dlenv.cloud.keys import private_key_path

    try:
        path = private_key_path(name)
        return path if path.is_file() else None
    except (DlenvError, OSError):
        return None


def say_remains(
    aws: Aws,
    name: str,
    terminal: Terminal,
    believed: Callable[[], list[str]],
    *,
    ask_aws: bool = True,
    kept: bool = False,
) -> None:
    """One line with exactly what is left of NAME in AWS and on disk, and the command for it.

    Asks AWS (by name) when `ask_aws`; after a second interrupt (or when asking fails or is
    interrupted) AWS is not asked (again) and `believed()`, what this process knows, is said.
    """
    items: list[str] | None = None
    if ask_aws:
        try:
            items = _remains(aws, name)
        except (KeyboardInterrupt, Exception):
            terminal.warn(f"could not ask AWS what is left of {name}; from what this dlenv saw:")
    if items is None:
        items = believed()
    if not items:
        terminal.info("remains: nothing")
        return
    fix = (
        f"`dlenv up {name}` continues, `dlenv down {name}` removes it"
        if kept
        else f"`dlenv down {name}` removes it"
    )
    terminal.warn(f"remains: {', '.join(items)}; {fix}")


def _remains(aws: Aws, name: str) -> list[str]:
    """Everything of NAME: its AWS resources, the local private key and ssh config entry."""
    from dlenv.cloud import launch
    from dlenv.ssh import config as sshconfig

    items = launch.footprint(aws, name).items()
    path = local_key(name)
    if path is not None:
        items.append(f"private key {path}")
    try:
        if sshconfig.has_entry(name):
            items.append(f"ssh config entry dlenv-{name}")
    except (DlenvError, OSError, ValueError):
        pass
    return items


BAKEABLE = ("ubuntu-24.04", "ubuntu-22.04", "debian-12", "dlami", "dlami-24.04")


def choose_image(aws: Aws, settings: Settings, arch: str, terminal: Terminal) -> ami.Image:
    """The image to launch: the newest baked image of this exact stack when `--ami` names a base
    (and `baked` is on), else the base itself. A baked image needs only the per-instance steps.
    """
    from dlenv.cloud import ami, images

    if settings.baked and settings.ami in BAKEABLE:
        found = images.find_baked(
            aws, stack=stack_fingerprint(), base=settings.ami, python=settings.python, arch=arch
        )
        if found is not None:
            terminal.info(
                f"using baked image {found.image_id} ({found.name}, {found.created[:10]}): "
                "only the per-instance steps will run (--no-baked: start from stock)"
            )
            return ami.Image(found.image_id, found.name, found.user, found.os, arch, "baked")
    return ami.resolve(aws, settings.ami, arch)


def launch_spec(
    aws: Aws,
    name: str,
    itype: catalog.InstanceType,
    image_id: str,
    key_name: str,
    security_group: str,
    subnets: dict[str, str],
    settings: Settings,
    tags: list[TagTypeDef],
    launch_id: str,
    **cluster: Any,
) -> launch.LaunchSpec:
    """What one `up` asks RunInstances for, from its settings; `up --nodes` adds the cluster
    fields (count, placement group, extra groups, EFA) as keywords."""
    from dlenv.cloud import launch

    return launch.LaunchSpec(
        env=name,
        itype=itype,
        image_id=image_id,
        root_device=root_device(aws, image_id),
        key_name=key_name,
        security_group=security_group,
        subnets=subnets,
        disk_gb=settings.disk,
        spot=settings.spot,
        spot_type=settings.spot_type,
        spot_fallback=settings.spot_fallback,
        tags=tags,
        launch_id=launch_id,
        **cluster,
    )


def root_device(aws: Aws, image_id: str) -> str:
    """The image's root device name (where the encrypted root volume of the size asked goes)."""
    from dlenv.cloud import images

    return images.root_device_name(aws, image_id) or "/dev/sda1"


def env_target(name: str, env: Environment, settings: Settings) -> SshTarget:
    from dlenv.cloud.keys import private_key_path
    from dlenv.ssh.target import environment_target

    return environment_target(
        name,
        host=env.public_ip or env.private_ip,
        tag_user=env.user,
        ssh_user=settings.ssh_user,
        key_file=private_key_path(name),
        proxy_command=settings.ssh_proxy_command,
    )


def ready_for_ssh(
    aws: Aws,
    name: str,
    env: Environment,
    settings: Settings,
    terminal: Terminal,
    *,
    wait_ssh: bool,
) -> SshTarget:
    """Write the ssh config entry and, unless told not to, wait until SSH login works."""
    from dlenv.cloud.hostkeys import console_host_keys, console_tail
    from dlenv.ssh import config as ssh_config
    from dlenv.ssh import wait as sshwait

    target = env_target(name, env, settings)
    ssh_config.write_entry(name, target)
    if not wait_ssh:
        return target
    from dlenv.cloud.keys import require_private_key

    require_private_key(name, aws.region_name)  # launched elsewhere: say how to import the key
    deadline = time.monotonic() + settings.ssh_timeout
    how = "through ssh_proxy_command" if target.proxy_command else f"{target.host}:{target.port}"
    with terminal.phase(f"waiting for the SSH port ({how})"):
        sshwait.wait_for_port(target, deadline)
    with terminal.phase(f"SSH login as {target.user} (host key verified)"):
        sshwait.wait_for_login(
            target,
            deadline,
            terminal.info,
            console_keys=lambda: console_host_keys(aws, env.instance_id),
            console_tail=lambda: console_tail(aws, env.instance_id),
        )
    return target


def target_of_running(name: str, settings: Settings, terminal: Terminal) -> SshTarget:
    """The SshTarget of a running environment, its host keys known to this machine.

    The first time this machine talks to it (after `up --no-provision`, or when another machine
    launched it) the keys are read from the instance console, exactly as `up` does.
    """
    from dlenv.cloud import instances
    from dlenv.cloud.session import from_settings
    from dlenv.ssh.known_hosts import has_keys

    known: SshTarget  # what cloud/instances.py gives (typed Any there)
    if has_keys(f"dlenv-{name}"):
        known = instances.ssh_target_for(name, settings)
        return known
    aws = from_settings(settings)
    env = instances.get(aws, name)
    if env.state != "running":
        known = instances.ssh_target_for(name, settings)  # raises the "start it" error
        return known
    return ready_for_ssh(aws, name, env, settings, terminal, wait_ssh=True)


def allow_ip(name: str, settings: Settings, terminal: Terminal | None = None) -> str:
    """Make the environment's security group allow SSH from the caller's current address only.

    The CIDR is resolved (and a bad one refused) before any AWS call; the rule change runs
    under the environment's lock, so two `allow-ip`s (or one racing `down`) take turns instead of
    revoking each other's rules.
    """
    from dlenv.cloud import instances, network
    from dlenv.cloud.aws_errors import translated
    from dlenv.cloud.session import from_settings
    from dlenv.statefile import env_lock

    validate_name(name)
    term = terminal or Terminal()
    cidr = network.resolve_ssh_cidr(
        settings.allow_cidr,
        settings.ip_check_url,
        term.warn,
        origin=settings.sources.get("allow_cidr", "--allow-cidr"),
    )
    aws = from_settings(settings)
    with env_lock(name, say=term.info):
        instances.get(aws, name)
        group = network.find_group(aws, name)
        if group is None:
            raise NotFoundError(
                f"{name} has no dlenv security group",
                f"`dlenv down {name}` and `dlenv up {name}` recreate it",
            )
        with translated(region=aws.region_name):
            network.set_ssh_cidr(aws, group["GroupId"], cidr, group)
    return cidr
