"""`dlenv up`: everything the command does once its flags are parsed.

One environment, `--count N` (NAME-1 .. NAME-N, provisioned in parallel) or `--nodes N` (a
cluster: `dlenv.ops.cluster_up`), end to end: every name checked (and several confirmed) before
anything is created, each name's lock held from launch through provisioning and the upload,
the launch rolled back whole on a failure or an interrupt (or a stopped environment resumed),
then provisioning, the environment's choices recorded, `--budget` set on the machine,
`--workdir` uploaded and the `next:` line said, all through the Terminal it is given.

`up` (one environment launched or resumed, no provisioning) is also what `dlenv ami bake`
starts its builder with.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dlenv.config import Settings
from dlenv.errors import DlenvError, UsageError
from dlenv.ops.down import delete_group_when_free
from dlenv.ops.lifecycle import (
    choose_image,
    env_tags,
    launch_spec,
    local_key,
    ready_for_ssh,
    record_choices,
    say_remains,
    stack_fingerprint,
    validate_name,
    with_env_choices,
)
from dlenv.ops.power import start
from dlenv.terminal import Terminal

if TYPE_CHECKING:
    from dlenv.cloud.catalog import InstanceType
    from dlenv.cloud.instances import Environment
    from dlenv.cloud.session import Aws
    from dlenv.provision.options import ProvisionOptions
    from dlenv.ssh.target import SshTarget


@dataclass(frozen=True)
class UpRequest:
    """What `dlenv up` was asked for, its flags already checked against each other."""

    name: str
    settings: Settings
    """Resolved settings; each environment works on its own copy (its recorded choices)."""
    options_for: Callable[[Settings], ProvisionOptions]
    """The provisioning options for an environment's settings (the stack flags bound in)."""
    count: int = 1
    """`--count N`: N unrelated environments NAME-1 .. NAME-N."""
    nodes: int | None = None
    """`--nodes N`: one cluster of N nodes (then `count` is 1)."""
    efa: bool | None = None
    """With `nodes`: EFA on/off; None = where the type has it."""
    provision: bool = True
    """False (`--no-provision`): launch only, no SSH wait."""
    yes: bool = False
    workdir: Path | None = None
    """`--workdir DIR`: uploaded into each environment's ~/work after provisioning."""

    @property
    def names(self) -> list[str]:
        """The environments of a single or `--count` request: NAME, or NAME-1 .. NAME-N."""
        if self.count == 1:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(1, self.count + 1)]


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


Ready = tuple[str, Settings, UpResult]
"""One environment as `up` left it: its name, its own settings, how it came up."""


@dataclass(frozen=True)
class UpDone:
    """What `dlenv up` did, for a caller that wants more than the lines it printed."""

    environments: list[Ready]
    """Every environment (a cluster's nodes in rank order)."""
    provisioned: bool
    """False after `--no-provision`."""


def execute(request: UpRequest, terminal: Terminal) -> UpDone:
    """`dlenv up` end to end: one environment, `--count N`, or a cluster (`--nodes N`)."""
    if request.workdir is not None:
        from dlenv.ops.sync import local_rsync

        local_rsync()  # missing rsync: one line before anything is launched
    if request.nodes is not None:
        from dlenv.ops import cluster_up

        return cluster_up.execute(request, terminal)
    from dlenv.statefile import env_lock

    names = request.names
    for each in names:
        validate_name(each)
    if request.count > 1 and not terminal.confirm(
        f"Launch {request.count} environments {names[0]} .. {names[-1]} "
        f"({request.settings.instance})?",
        assume_yes=request.yes,
    ):
        raise DlenvError("launch cancelled", "nothing was created")
    # Each environment's lock is held from launch through provisioning: a second `up`, a
    # `down` or a `provision` of the same name waits (one visible line) instead of racing.
    with contextlib.ExitStack() as locks:
        for each in names:
            locks.enter_context(env_lock(each, say=terminal.info))
        done = _up_locked(request, names, terminal)
        if request.workdir is not None:
            upload_workdir(names, request.workdir, request.settings, terminal)
    return done


def _up_locked(request: UpRequest, names: list[str], terminal: Terminal) -> UpDone:
    """Launch (or resume) every name, then provision them; the caller holds their locks."""
    settings, count = request.settings, request.count
    results: list[Ready] = []
    for each in names:
        env_settings = copy.deepcopy(settings)  # an existing env may fill in its own choices
        result = up(
            each,
            env_settings,
            terminal,
            yes=request.yes or count > 1,
            wait_ssh=request.provision,
            instance_explicit="instance" in settings.sources,
        )
        env = result.env
        if result.action == "launched":
            terminal.success(
                f"{each} is running: {env.instance_id} {env.instance_type} in {env.az}, "
                f"IP {env.public_ip}"
            )
        results.append((each, env_settings, result))
    if not request.provision:
        for each, _, _ in results:
            terminal.info(f"connect: dlenv ssh {each}   (or: ssh dlenv-{each} once SSH is up)")
        terminal.info(f"provision later: dlenv provision {request.name if count == 1 else 'NAME'}")
        return UpDone(results, provisioned=False)
    provision_all(results, request.options_for, terminal)
    shown = names[0]
    terminal.info(
        f"next: dlenv jupyter {shown}   |   dlenv smoke-test {shown}   |   ssh dlenv-{shown}"
        f"   |   dlenv down {shown}"
    )
    return UpDone(results, provisioned=True)


def provision_all(
    results: list[Ready],
    options_for: Callable[[Settings], ProvisionOptions],
    terminal: Terminal,
    *,
    efa: bool = False,
) -> None:
    """One environment through provision_environment; several in parallel (a log per host).

    Then each one's choices are recorded on it and its `--budget` set. `efa`: the hosts have
    EFA interfaces (a cluster's nodes): the plan includes the efa step."""
    from dlenv.provision import runner

    if len(results) == 1:
        [(each, env_settings, result)] = results
        # the environment's recorded choices (python manager, idle stop) may have filled settings in
        options = options_for(env_settings)
        runner.provision_environment(
            each, result.ssh_target, env_settings, terminal, options=options
        )
        record_choices(each, env_settings, result.env.instance_id)
        _budget(each, env_settings, result, terminal)
        return
    first_settings = results[0][1]
    options = dataclasses.replace(options_for(first_settings), efa=efa)
    targets = [result.ssh_target.with_(name=each) for each, _, result in results]
    host_results = runner.provision(targets, options, terminal)
    runner.raise_for_failures(host_results)
    for each, env_settings, result in results:
        record_choices(each, env_settings, result.env.instance_id)
        _budget(each, env_settings, result, terminal)
    terminal.success(f"provisioned {len(results)} environments")


def _budget(each: str, env_settings: Settings, result: UpResult, terminal: Terminal) -> None:
    """`--budget USD`: the machine enforces it from now (once: the same budget is not reset)."""
    if env_settings.budget is None:
        return
    from dlenv.cloud.session import from_settings
    from dlenv.provision import idle

    amount = float(env_settings.budget)
    if result.env.tags.get(idle.BUDGET_TAG) == f"{amount:.2f}":
        terminal.info(
            f"{each}: budget ${amount:.2f} already set (`dlenv budget {each}`: the spend)"
        )
        return
    price = idle.set_budget(from_settings(env_settings), result.env, result.ssh_target, amount)
    terminal.success(
        f"{each}: budget ${amount:.2f}: it stops itself after about {amount / price:.1f} "
        f"running hours at {price:.3f} $/h (warning at 80 %)"
    )


def upload_workdir(names: list[str], workdir: Path, settings: Settings, terminal: Terminal) -> None:
    """`--workdir DIR`: DIR into each environment's ~/work (the sync's rules: .gitignore...)."""
    from dlenv.ops import sync

    for each in names:
        remote = sync.environment_remote(each, settings, terminal)
        sync.mark_work(each, settings)
        result = sync.sync(remote, workdir, "up", terminal)
        terminal.success(f"uploaded {result.local} -> {result.remote} in {result.seconds:.1f}s")


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
    """Launch NAME, or resume it, under the environment's lock; no provisioning (`execute`).

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
    itype: InstanceType,
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
            say_remains(aws, name, terminal, run.believed_left, ask_aws=finished)
        raise
    run.stop_watching()
    keys.set_home_region(name, region)
    try:
        target = ready_for_ssh(aws, name, env, settings, terminal, wait_ssh=wait_ssh)
    except BaseException:  # the environment is whole: keep it, say what is there
        say_remains(aws, name, terminal, run.believed_left, kept=True)
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
        from dlenv.cloud.session import watch_calls

        def before(operation: str) -> None:
            self.in_flight = operation

        def after(operation: str, ok: bool, parsed: Mapping[str, Any]) -> None:
            self.in_flight = None
            if not ok:
                return
            if operation == "ImportKeyPair":
                self.confirmed["key pair"] = parsed.get("KeyName", "")
            elif operation == "CreateSecurityGroup":
                self.confirmed["security group"] = parsed.get("GroupId", "")
            elif operation == "RunInstances":
                self.confirmed["instance"] = parsed["Instances"][0]["InstanceId"]

        self._unregister = watch_calls(aws, before, after, key=f"dlenv-launch-{self.launch_id}")

    def stop_watching(self) -> None:
        if self._unregister is not None:
            self._unregister()
            self._unregister = None

    def local_key_created(self) -> bool:
        return not self.local_key_existed and local_key(self.name) is not None

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
            left.append(f"private key {local_key(self.name)}")
        return left


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
                instances.terminate(
                    aws,
                    sorted(found.instances, key=lambda e: e.instance_id),
                    requested=run.terminating.update,
                )
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
