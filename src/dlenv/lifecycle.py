"""The environment lifecycle: up, stop, start, down, status rows.

Each function takes resolved Settings and a Terminal and returns data; the CLI commands are thin
wrappers. Everything is idempotent: `up` on a running environment reports it, on a stopped one
starts it; `down` removes whatever of the environment is left, even after a partial failure.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from dlenv.config import Settings
from dlenv.errors import DlenvError, NotFoundError, UsageError
from dlenv.terminal import Terminal

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$|^[a-z]$")


def validate_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(
            f"environment name {name!r} is not valid",
            "use 1-40 lowercase letters, digits and dashes, starting with a letter (e.g. mybox)",
        )
    return name


def stack_fingerprint() -> str:
    """The stack fingerprint that tags instances (the provisioning manifest's hash)."""
    try:
        from dlenv.provision.manifest import load_stack
    except ImportError:  # provisioning layer not installed in this build
        return "none"
    return load_stack().fingerprint


# An environment's own choices, recorded as instance tags: later `up`/`provision` runs (from any
# machine) keep them unless a flag on that command says otherwise.
CHOICE_TAGS = {"python": "dlenv:python", "idle_stop": "dlenv:idle-stop"}


def _tags(
    name: str, user: str, os_name: str, stack: str, settings: Settings | None = None
) -> list[dict[str, str]]:
    from dlenv.cloud.instances import TAG_NAME, TAG_OS, TAG_STACK, TAG_USER

    tags = [
        {"Key": TAG_NAME, "Value": name},
        {"Key": TAG_STACK, "Value": stack},
        {"Key": "Name", "Value": f"dlenv-{name}"},
        {"Key": TAG_USER, "Value": user},
        {"Key": TAG_OS, "Value": os_name},
    ]
    if settings is not None:
        tags += [
            {"Key": tag, "Value": str(getattr(settings, attr))} for attr, tag in CHOICE_TAGS.items()
        ]
    return tags


def with_env_choices(settings: Settings, env_tags: dict[str, str], terminal: Terminal) -> Settings:
    """Settings where the environment's recorded choices replace anything but an explicit flag."""
    from dlenv import config

    for attr, tag in CHOICE_TAGS.items():
        if tag not in env_tags:
            continue
        recorded = config._coerce(attr, env_tags[tag], f"tag {tag}")
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
    from dlenv.cloud.aws_errors import translated
    from dlenv.cloud.session import from_settings

    aws = from_settings(settings)
    instance_id = instance_id or instances.get(aws, name).instance_id
    tags = [
        {"Key": tag, "Value": str(getattr(settings, attr))} for attr, tag in CHOICE_TAGS.items()
    ]
    with translated(region=aws.region_name):
        aws.ec2.create_tags(Resources=[instance_id], Tags=tags)


@dataclass
class UpResult:
    env: Any
    action: str  # launched | already-running | started
    target: Any | None = None


def up(
    name: str,
    settings: Settings,
    terminal: Terminal,
    *,
    yes: bool = False,
    wait_ssh: bool = True,
    instance_explicit: bool = True,
    extra_tags: dict[str, str] | None = None,
) -> UpResult:
    from dlenv.cloud import catalog, instances, keys, launch, network, quota
    from dlenv.cloud.session import from_settings

    validate_name(name)
    itype = catalog.lookup(settings.instance, settings.region)  # before any AWS call
    cidr = network.normalize_cidr(settings.allow_cidr) if settings.allow_cidr else None
    aws = from_settings(settings)
    region = aws.region_name

    existing = instances.find(aws, name)
    if existing is not None:
        with_env_choices(settings, existing.tags, terminal)
        if instance_explicit and existing.instance_type != itype.name:
            terminal.warn(
                f"{name} exists as {existing.instance_type}; --instance {itype.name} is ignored "
                f"(`dlenv down {name}` first to change the type)"
            )
        if existing.state in {"running", "pending"}:
            if existing.state == "pending":
                instances.wait(aws, "instance_running", existing.instance_id)
                existing = instances.get(aws, name)
            terminal.info(
                f"{name} is already running ({existing.instance_id}, {existing.public_ip})"
                + ("" if wait_ssh else "; nothing to do")
            )
            target = ready_for_ssh(aws, name, existing, settings, terminal, wait_ssh=wait_ssh)
            return UpResult(existing, "already-running", target)
        terminal.info(f"{name} exists and is {existing.state}: starting it")
        env = start(name, settings, terminal)
        target = ready_for_ssh(aws, name, env, settings, terminal, wait_ssh=wait_ssh)
        return UpResult(env, "started", target)

    warning = catalog.torch_support_warning(itype)
    if warning:
        terminal.warn(warning)
    with terminal.phase(f"checking {itype.name} in {region}"):
        zones = launch.check_offered(aws, itype.name)
        quota.preflight(
            aws, itype, settings.spot and settings.spot_fallback != "on-demand", terminal.warn
        )
        image = choose_image(aws, settings, itype.arch, terminal)
        if cidr is None:
            cidr = network.caller_cidr(settings.ip_check_url)
    market = "spot" if settings.spot else "on-demand"
    price = (
        f"{itype.price_per_hour:.3f} $/h ({itype.price_source})"
        if not settings.spot
        else f"spot (on-demand would be {itype.price_per_hour:.3f} $/h)"
    )
    question = (
        f"Launch {name}: {itype.name} ({itype.gpu_summary}, {itype.vcpus} vCPU) {market} "
        f"in {region} at {price}, {image.os} ({image.id}), SSH from {cidr}?"
    )
    if not terminal.confirm(question, assume_yes=yes):
        raise DlenvError("launch cancelled", "nothing was created")
    if yes:
        terminal.info(question.rstrip("?"))

    stack = stack_fingerprint()
    tags = _tags(name, settings.ssh_user or image.user, image.os, stack, settings)
    tags += [{"Key": k, "Value": v} for k, v in (extra_tags or {}).items()]
    created: list[str] = []
    try:
        vpc = network.default_vpc(aws)
        subnets = network.default_subnets(aws, vpc)
        with terminal.phase("key pair and security group"):
            key = keys.ensure_key_pair(aws, name, tags)
            if key.created_in_ec2:
                created.append("key")
            sg, sg_created = network.ensure_group(aws, name, vpc, cidr, tags)
            if sg_created:
                created.append("sg")
        root = _root_device(aws, image.id)
        spec = launch.LaunchSpec(
            env=name,
            itype=itype,
            image_id=image.id,
            root_device=root,
            key_name=key.name,
            security_group=sg,
            subnets=subnets,
            disk_gb=settings.disk,
            spot=settings.spot,
            spot_type=settings.spot_type,
            spot_fallback=settings.spot_fallback,
            tags=tags,
        )
        with terminal.phase(f"launching {itype.name} ({market})"):
            inst = launch.run(aws, spec, zones, terminal.info)
    except BaseException:
        _rollback(aws, name, created, terminal)
        raise
    with terminal.phase(f"waiting for {inst['InstanceId']} to run"):
        instances.wait(aws, "instance_running", inst["InstanceId"])
    env = instances.get(aws, name)
    target = ready_for_ssh(aws, name, env, settings, terminal, wait_ssh=wait_ssh)
    return UpResult(env, "launched", target)


BAKEABLE = ("ubuntu-24.04", "ubuntu-22.04", "debian-12", "dlami", "dlami-24.04")


def choose_image(aws: Any, settings: Settings, arch: str, terminal: Terminal) -> Any:
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


def _root_device(aws: Any, image_id: str) -> str:
    from dlenv.cloud.aws_errors import translated

    with translated(region=aws.region_name):
        images = aws.ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    return (images[0].get("RootDeviceName") if images else None) or "/dev/sda1"


def _rollback(aws: Any, name: str, created: list[str], terminal: Terminal) -> None:
    """Undo what this `up` created before the launch failed, so nothing is left half-made."""
    from dlenv.cloud import keys, network

    for what in reversed(created):
        try:
            if what == "sg":
                network.delete_group(aws, name)
            elif what == "key":
                keys.delete_key_pair(aws, name)
        except Exception as exc:  # report, keep rolling back the rest
            terminal.warn(
                f"could not roll back {what} of {name}: {exc}; `dlenv down {name}` removes it"
            )
    if created:
        terminal.note(f"rolled back: {', '.join(created)}")


def _target(name: str, env: Any, settings: Settings) -> Any:
    from dlenv.cloud.keys import private_key_path
    from dlenv.ssh_target import SshTarget
    from dlenv.sshconfig import known_hosts_path

    return SshTarget(
        host=env.public_ip or env.private_ip,
        user=settings.ssh_user or env.user,
        key_file=private_key_path(name),
        known_hosts=known_hosts_path(),
        proxy_command=settings.ssh_proxy_command,
        name=name,
        host_key_alias=f"dlenv-{name}",
    )


def ready_for_ssh(
    aws: Any, name: str, env: Any, settings: Settings, terminal: Terminal, *, wait_ssh: bool
) -> Any:
    """Write the ssh config entry and, unless told not to, wait until SSH login works."""
    from dlenv import sshconfig, sshwait
    from dlenv.cloud.hostkeys import console_host_keys, console_tail

    target = _target(name, env, settings)
    sshconfig.write_entry(name, target)
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


def target_of_running(name: str, settings: Settings, terminal: Terminal) -> Any:
    """The SshTarget of a running environment, its host keys known to this machine.

    The first time this machine talks to it (after `up --no-provision`, or when another machine
    launched it) the keys are read from the instance console, exactly as `up` does.
    """
    from dlenv import sshconfig
    from dlenv.cloud import instances
    from dlenv.cloud.session import from_settings

    if sshconfig.known_keys(f"dlenv-{name}"):
        return instances.ssh_target_for(name, settings)
    aws = from_settings(settings)
    env = instances.get(aws, name)
    if env.state != "running":
        return instances.ssh_target_for(name, settings)  # raises the "start it" error
    return ready_for_ssh(aws, name, env, settings, terminal, wait_ssh=True)


def stop(name: str, settings: Settings, terminal: Terminal) -> Any:
    from dlenv.cloud import instances
    from dlenv.cloud.aws_errors import translated
    from dlenv.cloud.session import from_settings

    aws = from_settings(settings)
    env = instances.get(aws, name)
    if env.state in {"stopped", "stopping"}:
        terminal.info(f"{name} is already {env.state}")
        return env
    if env.market == "spot-one-time":
        raise UsageError(
            f"{name} is a one-time spot instance, which EC2 cannot stop",
            f"`dlenv down {name}` removes it; launch with --spot-type persistent to be able to stop",
        )
    with terminal.phase(f"stopping {name} ({env.instance_id})"):
        with translated(region=aws.region_name):
            aws.ec2.stop_instances(InstanceIds=[env.instance_id])
        instances.wait(aws, "instance_stopped", env.instance_id)
    return instances.get(aws, name)


def start(name: str, settings: Settings, terminal: Terminal) -> Any:
    from dlenv import sshconfig
    from dlenv.cloud import instances
    from dlenv.cloud.aws_errors import translated
    from dlenv.cloud.session import from_settings

    aws = from_settings(settings)
    env = instances.get(aws, name)
    if env.state == "running":
        terminal.info(f"{name} is already running")
        return env
    if env.state == "stopping":
        instances.wait(aws, "instance_stopped", env.instance_id)
    with terminal.phase(f"starting {name} ({env.instance_id})"):
        with translated(region=aws.region_name, instance_type=env.instance_type):
            aws.ec2.start_instances(InstanceIds=[env.instance_id])
        instances.wait(aws, "instance_running", env.instance_id)
    env = instances.get(aws, name)
    # The public IP changes on start; host keys are recorded under the alias dlenv-<name>.
    sshconfig.write_entry(name, _target(name, env, settings))
    return env


@dataclass
class DownResult:
    instance: str | None
    security_group: bool
    key_pair: bool
    ssh_entry: bool


def down(
    name: str, settings: Settings, terminal: Terminal, *, keep_key: bool = False
) -> DownResult:
    from dlenv import sshconfig
    from dlenv.cloud import instances, keys, network
    from dlenv.cloud.aws_errors import translated
    from dlenv.cloud.session import from_settings

    validate_name(name)
    aws = from_settings(settings)
    env = instances.find(aws, name)
    has_sg = network.find_group(aws, name) is not None
    has_key = keys.ec2_key_exists(aws, keys.key_name(name))
    if env is None and not has_sg and not has_key and not sshconfig.has_entry(name):
        raise NotFoundError(
            f"no environment named {name!r} in {aws.region_name}",
            "`dlenv status` lists your environments (check --region)",
        )
    instance_id = None
    if env is not None:
        instance_id = env.instance_id
        with terminal.phase(f"terminating {name} ({env.instance_id})"):
            with translated(region=aws.region_name):
                if env.spot_request_id:  # a persistent request would relaunch it otherwise
                    aws.ec2.cancel_spot_instance_requests(
                        SpotInstanceRequestIds=[env.spot_request_id]
                    )
                aws.ec2.terminate_instances(InstanceIds=[env.instance_id])
            instances.wait(aws, "instance_terminated", env.instance_id)
    sshconfig.remove_host(f"dlenv-{name}")
    sg_deleted = _delete_group_when_free(aws, name) if has_sg else False
    key_deleted = False
    if has_key and not keep_key:
        key_deleted = keys.delete_key_pair(aws, name)
    entry = sshconfig.remove_entry(name)
    return DownResult(instance_id, sg_deleted, key_deleted, entry)


def _delete_group_when_free(aws: Any, name: str, timeout: float = 180) -> bool:
    """Delete the SG, retrying while EC2 still reports the terminated instance's ENI on it."""
    import botocore.exceptions

    from dlenv.cloud import network
    from dlenv.cloud.aws_errors import error_code

    deadline = time.monotonic() + timeout
    while True:
        try:
            return network.delete_group(aws, name)
        except DlenvError as exc:
            cause = exc.__cause__
            if (
                not (
                    isinstance(cause, botocore.exceptions.ClientError)
                    and error_code(cause) == "DependencyViolation"
                )
                or time.monotonic() > deadline
            ):
                raise
            time.sleep(5)


def allow_ip(name: str, settings: Settings) -> str:
    """Make the environment's security group allow SSH from the caller's current address only."""
    from dlenv.cloud import instances, network
    from dlenv.cloud.aws_errors import translated
    from dlenv.cloud.session import from_settings

    aws = from_settings(settings)
    instances.get(aws, name)
    group = network.find_group(aws, name)
    if group is None:
        raise NotFoundError(
            f"{name} has no dlenv security group",
            f"`dlenv down {name}` and `dlenv up {name}` recreate it",
        )
    cidr = (
        network.normalize_cidr(settings.allow_cidr)
        if settings.allow_cidr
        else network.caller_cidr(settings.ip_check_url)
    )
    with translated(region=aws.region_name):
        network.set_ssh_cidr(aws, group["GroupId"], cidr, group)
    return cidr
