"""The environment lifecycle: up, stop, start, down, status rows.

Each function takes resolved Settings and a Terminal and returns data; the CLI commands are thin
wrappers. Everything is idempotent: `up` on a running environment reports it, on a stopped one
starts it; `down` removes whatever of the environment is left, even after a partial failure.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dlenv.config import Settings
from dlenv.errors import DlenvError, NotFoundError, UsageError
from dlenv.terminal import Terminal

if TYPE_CHECKING:
    from dlenv.cloud import catalog, launch
    from dlenv.cloud.instances import Environment
    from dlenv.cloud.session import Aws
    from dlenv.ssh.target import SshTarget

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$|^[a-z]$")


def validate_name(name: str) -> str:
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
) -> list[dict[str, str]]:
    from dlenv.cloud.instances import TAG_NAME, TAG_OS, TAG_STACK, TAG_USER
    from dlenv.ops.sync import TAG_WORK

    tags = [
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
    from dlenv.cloud.aws_errors import translated
    from dlenv.cloud.session import from_settings
    from dlenv.ops.sync import TAG_WORK

    aws = from_settings(settings)
    instance_id = instance_id or instances.get(aws, name).instance_id
    tags = [
        {"Key": tag, "Value": _tag_value(getattr(settings, attr))}
        for attr, tag in CHOICE_TAGS.items()
    ]
    tags.append({"Key": TAG_WORK, "Value": "yes"})  # provisioned: `down` checks ~/work first
    with translated(region=aws.region_name):
        aws.ec2.create_tags(Resources=[instance_id], Tags=tags)


@dataclass
class UpResult:
    env: Environment
    action: Literal["launched", "already-running", "started"]
    target: SshTarget | None = None
    """Set when `up` waited for SSH (wait_ssh=True: the path that provisions)."""

    @property
    def ssh_target(self) -> SshTarget:
        """The target of an `up` that waited for SSH; a bug to ask otherwise."""
        if self.target is None:
            raise DlenvError(f"{self.env.name}: no SSH target (up did not wait for SSH)")
        return self.target


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
    """Launch NAME, or resume it, under the environment's lock.

    The lock makes two `up`s of one name on this machine take turns: the second finds the
    first's instance. Across machines the launch id and the tag check after RunInstances do
    (see `_launch`).
    """
    from dlenv.cloud import catalog, instances, keys, network
    from dlenv.cloud.session import from_settings
    from dlenv.statefile import env_lock

    validate_name(name)
    itype = catalog.launchable(settings.instance, settings.region)  # before any AWS call
    cidr = network.resolve_ssh_cidr(  # validated before any AWS call; detected later
        settings.allow_cidr,
        None,
        terminal.warn,
        origin=settings.sources.get("allow_cidr", "--allow-cidr"),
    )
    aws = from_settings(settings)

    with env_lock(name, say=terminal.info):
        existing = next(
            (e for e in instances.list_environments(aws, name) if e.state != "shutting-down"),
            None,
        )
        if existing is None:
            _refuse_second_region(aws, name, settings)
            return _launch(aws, name, itype, cidr, settings, terminal, yes, wait_ssh, extra_tags)
        key = keys.private_key_path(name)
        if key.is_file() and keys.home_region(name) is None:  # a key from before the record
            keys.set_home_region(name, aws.region_name)
        if key.is_file():  # OpenSSH refuses a key others can read: fix it (one line) or refuse
            keys.check_private_key(key, terminal.warn)
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


def _launch(
    aws: Aws,
    name: str,
    itype: Any,
    cidr: str | None,
    settings: Settings,
    terminal: Terminal,
    yes: bool,
    wait_ssh: bool,
    extra_tags: dict[str, str] | None,
) -> UpResult:
    """Create key pair, security group and instance for NAME, all tagged with one launch id.

    Until the instance runs and has won any race for the name, every failure and every
    interrupt (Ctrl-C, SIGTERM) rolls back what this launch created, found by its tag; the
    last line then says exactly what remains. Once it runs, an interrupt keeps the environment
    whole (instance, key, group) and says how to continue or remove it.
    """
    from dlenv.cloud import instances, keys, launch, network, quota

    region = aws.region_name
    with terminal.phase(f"checking {itype.name} in {region}"):
        zones = launch.check_offered(aws, itype.name)
        quota.preflight(
            aws, itype, settings.spot and settings.spot_fallback != "on-demand", terminal.warn
        )
        image = choose_image(aws, settings, itype.arch, terminal)
        if cidr is None:
            cidr = network.resolve_ssh_cidr(None, settings.ip_check_url, terminal.warn)
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

    run = _LaunchRun(name, launch.new_launch_id(), keys.private_key_path(name).is_file())
    stack = stack_fingerprint()
    tags = env_tags(name, settings.ssh_user or image.user, image.os, stack, settings)
    tags += [{"Key": k, "Value": v} for k, v in (extra_tags or {}).items()]
    tags.append({"Key": launch.TAG_LAUNCH, "Value": run.launch_id})
    run.watch(aws)
    try:
        vpc = network.default_vpc(aws)
        subnets = network.default_subnets(aws, vpc)
        with terminal.phase("key pair and security group"):
            key = keys.ensure_key_pair(aws, name, tags, say=terminal.warn)
            sg, _ = network.ensure_group(aws, name, vpc, cidr, tags)
        spec = launch_spec(
            aws, name, itype, image.id, key.name, sg, subnets, settings, tags, run.launch_id
        )
        with terminal.phase(f"launching {itype.name} ({market})"):
            inst = launch.run(aws, spec, zones, terminal.info)
        mine = inst.instance_id
        _lose_if_not_first(aws, name, mine, inst.launch_time)
        with terminal.phase(f"waiting for {mine} to run"):
            instances.wait(aws, "instance_running", mine)
        _lose_if_not_first(aws, name, mine, inst.launch_time)  # a same-second rival
        env = next(e for e in instances.list_environments(aws, name) if e.instance_id == mine)
    except launch.ConcurrentLaunchError as exc:
        undone, finished = _rollback(aws, run, terminal)
        what = (
            f"launched {name} at the same time ({exc.winner})"
            if exc.winner
            else f"is launching {name} at the same time ({exc.what})"
        )
        left = "" if finished else "; rollback did not finish: " + _left_text(run)
        raise DlenvError(
            f"another dlenv {what}; this launch was undone: "
            f"{', '.join(undone) or 'it had created nothing'}{left}",
            f"`dlenv status {name}` shows the other launch's environment"
            + ("" if finished else f"; `dlenv down {name}` removes what is left"),
        ) from None
    except BaseException as exc:
        run.stop_watching()
        if isinstance(exc, KeyboardInterrupt):
            terminal.warn(
                f"interrupted: undoing what this launch of {name} created "
                f"(found by its tag {launch.TAG_LAUNCH}={run.launch_id}; Ctrl-C again to stop)"
            )
        undone, finished = _rollback(aws, run, terminal)
        if undone:
            terminal.note(f"rolled back: {', '.join(undone)}")
        if undone or not finished or isinstance(exc, KeyboardInterrupt):
            _say_remains(aws, name, terminal, run.believed_left, ask_aws=finished)
        raise
    run.stop_watching()
    keys.set_home_region(name, region)
    try:
        target = ready_for_ssh(aws, name, env, settings, terminal, wait_ssh=wait_ssh)
    except BaseException:  # the environment is whole: keep it, say what is there
        _say_remains(aws, name, terminal, run.believed_left, kept=True)
        raise
    return UpResult(env, "launched", target)


def _refuse_second_region(aws: Aws, name: str, settings: Settings) -> None:
    """Refuse `up NAME` here while this machine's NAME lives in another region.

    `ssh dlenv-NAME`, the known_hosts alias and the private key name one environment per
    machine; a second NAME elsewhere would share them (and a `down` of one would delete the
    other's key). A record whose environment is gone is stale and simply replaced.
    """
    from dlenv.cloud import instances, keys
    from dlenv.cloud.session import Aws

    home = keys.home_region(name)
    if home is None or home == aws.region_name or not keys.private_key_path(name).is_file():
        return
    there = instances.find(Aws(region=home, profile=settings.profile), name)
    if there is not None:
        raise UsageError(
            f"{name} already exists in {home} ({there.instance_id}, {there.state}); one name "
            "is one environment on this machine (`ssh dlenv-" + name + "` names one host)",
            f"pick another name, or remove that one first: `dlenv down {name} --region {home}`",
        )


def _lose_if_not_first(aws: Aws, name: str, mine: str, launch_time: Any) -> None:
    """Raise ConcurrentLaunchError when another launch's instance keeps the name, not ours."""
    from dlenv.cloud import launch

    winner = launch.contest_winner(aws, name, mine, launch_time)
    if winner is not None:
        raise launch.ConcurrentLaunchError(name, f"its instance is {winner}", winner=winner)


# The create calls of a launch, and what each creates (for an interrupt while one is in flight).
_CREATES = {
    "ImportKeyPair": "key pair",
    "CreateSecurityGroup": "security group",
    "RunInstances": "instance",
}
_SETTLE_S = 10.0
"""How long an interrupted create call may take to show up in AWS's answers."""


@dataclass
class _LaunchRun:
    """One launch attempt as this process saw it: its id, and which AWS calls it made.

    The rollback goes by tags, not by this; this is only the fallback for saying what may
    remain when the rollback itself is interrupted before it could ask AWS.
    """

    name: str
    launch_id: str
    local_key_existed: bool
    in_flight: str | None = None
    """The EC2 call whose answer had not arrived (when the interrupt came)."""
    confirmed: dict[str, str] = field(default_factory=dict)
    """kind -> id of what AWS confirmed creating."""
    found: Any = None
    """The launch's footprint, once the rollback asked AWS for it."""
    terminating: set[str] = field(default_factory=set)
    """Instance ids whose termination the rollback requested."""
    gone: set[str] = field(default_factory=set)
    """Labels the rollback removed."""
    _unregister: Any = None

    def watch(self, aws: Aws) -> None:
        """Follow every EC2 call (botocore events) to know what is in flight and confirmed."""
        events = aws.ec2.meta.events
        uid = f"dlenv-launch-{self.launch_id}"

        def before(model: Any, **_: Any) -> None:
            self.in_flight = model.name

        def after(model: Any, http_response: Any, parsed: Any, **_: Any) -> None:
            self.in_flight = None
            if getattr(http_response, "status_code", 500) >= 300:
                return
            if model.name == "ImportKeyPair":
                self.confirmed["key pair"] = parsed.get("KeyName", "")
            elif model.name == "CreateSecurityGroup":
                self.confirmed["security group"] = parsed.get("GroupId", "")
            elif model.name == "RunInstances":
                self.confirmed["instance"] = parsed["Instances"][0]["InstanceId"]

        events.register("before-call.ec2", before, unique_id=uid + "-before")
        events.register("after-call.ec2", after, unique_id=uid + "-after")

        def unregister() -> None:
            events.unregister("before-call.ec2", unique_id=uid + "-before")
            events.unregister("after-call.ec2", unique_id=uid + "-after")

        self._unregister = unregister

    def stop_watching(self) -> None:
        if self._unregister is not None:
            self._unregister()
            self._unregister = None

    def local_key_created(self) -> bool:
        return not self.local_key_existed and _local_key(self.name) is not None

    def believed_left(self) -> list[str]:
        """What may remain, from what this process saw (when AWS could not be asked)."""
        left: list[str] = []
        if self.found is not None:
            for e in self.found.instances:
                if e.instance_id in self.gone:
                    continue
                state = "termination requested" if e.instance_id in self.terminating else e.state
                left.append(f"instance {e.instance_id} ({state})")
            if self.found.key_pair and "key pair" not in self.gone:
                left.append(f"key pair {self.found.key_pair}")
            if self.found.security_group and "security group" not in self.gone:
                left.append(f"security group {self.found.security_group}")
        else:
            left = [f"{kind} {ident}" for kind, ident in self.confirmed.items()]
            pending = _CREATES.get(self.in_flight or "")
            if pending and pending not in self.confirmed:
                left.append(f"possibly a {pending} (its {self.in_flight} was interrupted)")
        if self.local_key_created() and "local key" not in self.gone:
            left.append(f"private key {_local_key(self.name)}")
        return left


def _local_key(name: str) -> Any:
    """NAME's private key file when it is there; None also when the key dir is unusable
    (this only feeds the "what remains" line, which must never fail itself)."""
    from dlenv.cloud.keys import private_key_path

    try:
        path = private_key_path(name)
        return path if path.is_file() else None
    except (DlenvError, OSError):
        return None


def _left_text(run: _LaunchRun) -> str:
    return ", ".join(run.believed_left()) or "nothing"


def _rollback(aws: Aws, run: _LaunchRun, terminal: Terminal) -> tuple[list[str], bool]:
    """Undo what this launch created, found in AWS by its launch tag: (what was undone, done?).

    Order keeps the environment consistent at every step: the instance goes first (waiting
    until it is terminated), then the key pair and the local key (never while an instance of
    ours still holds them), then the group once no instance holds it. Another launch's
    instance (a race winner) keeps the key pair and group it uses. A second interrupt stops
    the rollback; the caller then says what may remain.
    """
    from dlenv.cloud import instances, keys, launch
    from dlenv.cloud.aws_errors import translated

    name = run.name
    in_flight = run.in_flight
    run.stop_watching()
    undone: list[str] = []
    try:
        run.found = found = _find_own(aws, run, in_flight, terminal)
        own = {e.instance_id for e in found.instances}
        others = [
            e
            for e in instances.list_environments(aws, name)
            if e.instance_id not in own and e.state not in launch.DEAD_STATES
        ]
        if found.instances:
            ids = sorted(own)
            with terminal.phase(f"terminating {', '.join(ids)} (created by this launch)"):
                with translated(region=aws.region_name):
                    spot = [e.spot_request_id for e in found.instances if e.spot_request_id]
                    if spot:  # a persistent request would launch it again
                        aws.ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=spot)
                    run.terminating.update(ids)
                    aws.ec2.terminate_instances(InstanceIds=ids)
                for ident in ids:
                    instances.wait(aws, "instance_terminated", ident, timeout=300)
            for e in found.instances:
                run.gone.add(e.instance_id)
                undone.append(f"terminated {e.instance_id}")
        users = [e.instance_id for e in others if e.key_name == keys.key_name(name)]
        key_kept = False
        if found.key_pair:
            if users:
                key_kept = True
                terminal.note(f"kept key pair {found.key_pair}: {users[0]} uses it")
            else:
                keys.delete_key_pair(aws, name, keep_local=True)
                run.gone.add("key pair")
                undone.append(f"deleted key pair {found.key_pair}")
        if run.local_key_created() and not key_kept:
            path = keys.private_key_path(name)
            keys.delete_local_key(name)
            run.gone.add("local key")
            undone.append(f"deleted the local key {path}")
        if found.security_group:
            users = [e.instance_id for e in others if found.security_group in e.security_groups]
            if users:
                terminal.note(f"kept security group {found.security_group}: {users[0]} uses it")
            else:
                delete_group_when_free(aws, name, group_id=found.security_group)
                run.gone.add("security group")
                undone.append(f"deleted security group {found.security_group}")
    except KeyboardInterrupt:
        terminal.warn(f"rollback of {name} interrupted")
        return undone, False
    except Exception as exc:  # report; the caller says what is left
        text = exc.one_line() if isinstance(exc, DlenvError) else f"{type(exc).__name__}: {exc}"
        terminal.warn(f"rollback of {name} stopped: {text}")
        return undone, False
    return undone, True


def _find_own(aws: Aws, run: _LaunchRun, in_flight: str | None, terminal: Terminal) -> Any:
    """This launch's footprint by its tag, waiting a bounded time for an interrupted create.

    A create call whose answer never arrived may still have been carried out (and AWS's lists
    lag a little): until it shows up, or _SETTLE_S pass, the footprint is asked for again.
    """
    from dlenv.cloud import launch

    expected = set(run.confirmed)
    if in_flight in _CREATES:
        expected.add(_CREATES[in_flight])
    deadline = time.monotonic() + _SETTLE_S
    announced = False
    while True:
        found = launch.footprint(aws, run.name, run.launch_id)
        missing = [k for k in expected if not found.has(k)]
        if not missing or time.monotonic() >= deadline:
            return found
        if not announced:
            terminal.info(
                f"checking whether the interrupted {', '.join(sorted(missing))} reached AWS "
                f"(up to {_SETTLE_S:.0f}s)"
            )
            announced = True
        time.sleep(1)


def _say_remains(
    aws: Aws,
    name: str,
    terminal: Terminal,
    believed: Any,
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
    path = _local_key(name)
    if path is not None:
        items.append(f"private key {path}")
    try:
        if sshconfig.has_entry(name):
            items.append(f"ssh config entry dlenv-{name}")
    except (DlenvError, OSError, ValueError):
        pass
    return items


BAKEABLE = ("ubuntu-24.04", "ubuntu-22.04", "debian-12", "dlami", "dlami-24.04")


def choose_image(aws: Aws, settings: Settings, arch: str, terminal: Terminal) -> Any:
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
    tags: list[dict[str, str]],
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
    from dlenv.cloud.aws_errors import translated

    with translated(region=aws.region_name):
        images = aws.ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    return (images[0].get("RootDeviceName") if images else None) or "/dev/sda1"


def _target(name: str, env: Any, settings: Settings) -> Any:
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
    aws: Aws, name: str, env: Any, settings: Settings, terminal: Terminal, *, wait_ssh: bool
) -> Any:
    """Write the ssh config entry and, unless told not to, wait until SSH login works."""
    from dlenv.cloud.hostkeys import console_host_keys, console_tail
    from dlenv.ssh import config as ssh_config
    from dlenv.ssh import wait as sshwait

    target = _target(name, env, settings)
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


def target_of_running(name: str, settings: Settings, terminal: Terminal) -> Any:
    """The SshTarget of a running environment, its host keys known to this machine.

    The first time this machine talks to it (after `up --no-provision`, or when another machine
    launched it) the keys are read from the instance console, exactly as `up` does.
    """
    from dlenv.cloud import instances
    from dlenv.cloud.session import from_settings
    from dlenv.ssh.known_hosts import has_keys

    if has_keys(f"dlenv-{name}"):
        return instances.ssh_target_for(name, settings)
    aws = from_settings(settings)
    env = instances.get(aws, name)
    if env.state != "running":
        return instances.ssh_target_for(name, settings)  # raises the "start it" error
    return ready_for_ssh(aws, name, env, settings, terminal, wait_ssh=True)


def stop(name: str, settings: Settings, terminal: Terminal) -> Any:
    """Stop NAME under the environment's lock."""
    from dlenv.cloud.session import from_settings
    from dlenv.statefile import env_lock

    aws = from_settings(settings)
    with env_lock(name, say=terminal.info):
        return _stop(aws, name, terminal)


def _stop(aws: Aws, name: str, terminal: Terminal) -> Any:
    from dlenv.cloud import instances
    from dlenv.cloud.aws_errors import translated

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


def start(
    name: str, settings: Settings, terminal: Terminal, *, instance_type: str | None = None
) -> Any:
    """Start NAME under the environment's lock (re-entered when `up` starts a stopped one).

    `instance_type`: change the stopped instance's type first (same disk, same everything):
    the way back when its own type has no capacity in its zone.
    """
    from dlenv.cloud.session import from_settings
    from dlenv.statefile import env_lock

    aws = from_settings(settings)
    with env_lock(name, say=terminal.info):
        return _start(aws, name, settings, terminal, instance_type=instance_type)


def compatible_types(current: str, region: str | None, limit: int = 3) -> list[str]:
    """Types a stopped instance of `current` can switch to and keep working: same CPU
    architecture, an NVIDIA GPU the pinned driver and CUDA support, as many GPUs; closest in
    price first."""
    from dlenv.cloud import catalog

    have = catalog.lookup(current, region)
    fits = [
        t
        for t in catalog.all_types(region)
        if t.name != current
        and t.arch == have.arch
        and t.gpu_count == have.gpu_count
        and catalog.unsupported_reason(t) is None
    ]
    fits.sort(key=lambda t: (abs(t.price_per_hour - have.price_per_hour), t.name))
    return [t.name for t in fits[:limit]]


def change_type(aws: Aws, name: str, env: Any, new_type: str, terminal: Terminal) -> Any:
    """Change a stopped environment's instance type after checking the new one fits."""
    from dlenv.cloud import catalog, instances
    from dlenv.cloud.aws_errors import translated
    from dlenv.errors import UsageError

    if new_type == env.instance_type:
        return env
    new = catalog.launchable(new_type, aws.region_name)  # known, and a GPU the stack runs
    old = catalog.lookup(env.instance_type, aws.region_name)
    if new.arch != old.arch:
        raise UsageError(
            f"{new_type} is {new.arch} but {name}'s disk holds an {old.arch} system",
            f"pick an {old.arch} type: {', '.join(compatible_types(old.name, aws.region_name))}",
        )
    if env.spot:
        raise UsageError(
            f"{name} is a spot instance: AWS does not change a spot instance's type",
            f"wait for capacity (`dlenv start {name}` again later); persistent spot restarts "
            "by itself when capacity returns",
        )
    if env.state != "stopped":
        raise UsageError(
            f"{name} is {env.state}: the type changes only while it is stopped",
            f"`dlenv stop {name}` first",
        )
    with translated(region=aws.region_name, instance_type=new_type):
        aws.ec2.modify_instance_attribute(
            InstanceId=env.instance_id, InstanceType={"Value": new_type}
        )
    terminal.info(
        f"{name}: type {old.name} ({old.price_per_hour:.3f} $/h) -> {new.name} "
        f"({new.price_per_hour:.3f} $/h, {new.gpu_summary}); disk and files unchanged"
    )
    return instances.get(aws, name)


def _start(
    aws: Aws,
    name: str,
    settings: Settings,
    terminal: Terminal,
    *,
    instance_type: str | None = None,
) -> Any:
    from dlenv.cloud import instances
    from dlenv.cloud.aws_errors import translated
    from dlenv.errors import CapacityError
    from dlenv.ssh import config as sshconfig

    env = instances.get(aws, name)
    if env.state == "running":
        if instance_type and instance_type != env.instance_type:
            from dlenv.errors import UsageError

            raise UsageError(
                f"{name} is running as {env.instance_type}: the type changes only while stopped",
                f"`dlenv stop {name}`, then `dlenv start {name} --instance {instance_type}`",
            )
        terminal.info(f"{name} is already running")
        return env
    if env.state == "stopping":
        instances.wait(aws, "instance_stopped", env.instance_id)
        env = instances.get(aws, name)
    if instance_type:
        env = change_type(aws, name, env, instance_type, terminal)
    with terminal.phase(f"starting {name} ({env.instance_id})"):
        try:
            with translated(
                region=aws.region_name, instance_type=env.instance_type, az=env.az or ""
            ):
                aws.ec2.start_instances(InstanceIds=[env.instance_id])
        except CapacityError as exc:
            others = compatible_types(env.instance_type, aws.region_name)
            ways = [f"wait and run `dlenv start {name}` again (capacity comes and goes)"]
            if not env.spot and others:
                ways.append(
                    f"the same disk on another type: `dlenv start {name} --instance {others[0]}`"
                    + (f" (or {', '.join(others[1:])})" if others[1:] else "")
                )
            if _other_zones(aws, env):
                ways.append(
                    f"the same type in another zone: `dlenv start {name} --move` (snapshot, new "
                    "instance there with the same disk, key, group and tags; the old one goes "
                    "once the new one runs)"
                )
            raise CapacityError(
                f"{exc.message}; {name} is still stopped, nothing changed",
                "; or ".join(ways),
                code=exc.code,
            ) from None
        instances.wait(aws, "instance_running", env.instance_id)
    env = instances.get(aws, name)
    # The public IP changes on start; host keys are recorded under the alias dlenv-<name>.
    sshconfig.write_entry(name, _target(name, env, settings))
    return env


def _other_zones(aws: Aws, env: Any) -> list[str]:
    """Zones of the region, other than the environment's, that offer its type (for `--move`);
    empty when AWS cannot tell (the error being reported matters more)."""
    from dlenv.cloud import launch

    try:
        return [z for z in launch.offered_zones(aws, env.instance_type) if z != env.az]
    except DlenvError:
        return []


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
            _say_remains(aws, name, terminal, lambda: _down_believed(name, seen))
            raise


def _down(
    aws: Aws, name: str, terminal: Terminal, keep_key: bool, seen: dict[str, Any]
) -> DownResult:
    from dlenv.cloud import instances, keys, launch
    from dlenv.cloud.aws_errors import translated
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
            with translated(region=aws.region_name):
                spot = [e.spot_request_id for e in found.instances if e.spot_request_id]
                if spot:  # a persistent request would relaunch it otherwise
                    aws.ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=spot)
                seen["terminating"] = set(ids)
                aws.ec2.terminate_instances(InstanceIds=ids)
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
    path = _local_key(name)
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
