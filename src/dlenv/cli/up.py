"""`dlenv up NAME`: launch (or resume) an environment, wait for SSH, provision it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, setting_option, yes_option
from dlenv.cli.provision import STACK_FLAGS, stack_options

if TYPE_CHECKING:
    from dlenv.cli._app import App
    from dlenv.config import Settings
    from dlenv.ops.lifecycle import UpResult
    from dlenv.terminal import Terminal


@click.command()
@click.argument("name")
@setting_option(
    "--instance",
    "-t",
    setting="instance",
    help="EC2 GPU instance type (default g4dn.xlarge).",
    metavar="TYPE",
)
@setting_option(
    "--ami",
    setting="ami",
    help="ubuntu-24.04 (default), ubuntu-22.04, debian-12 or ami-....",
    metavar="AMI",
)
@click.option(
    "--baked/--no-baked",
    "baked",
    default=None,
    help="Launch from the newest image `dlenv ami bake` made for this stack, if any (default)."
    " [env: DLENV_BAKED]",
)
@setting_option(
    "--disk",
    setting="disk",
    type=int,
    help="Root volume GB (gp3, encrypted; default 100).",
    metavar="GB",
)
@click.option(
    "--spot/--on-demand",
    "spot",
    default=None,
    help="Spot (cheaper, can be interrupted) or on-demand. [env: DLENV_SPOT]",
)
@setting_option(
    "--spot-type",
    setting="spot_type",
    type=click.Choice(["persistent", "one-time"]),
    help="persistent (stops on interruption, keeps the disk) or one-time.",
)
@setting_option(
    "--spot-fallback",
    setting="spot_fallback",
    type=click.Choice(["none", "on-demand"]),
    help="Launch on-demand when no zone has spot capacity.",
)
@setting_option(
    "--allow-cidr",
    setting="allow_cidr",
    help="CIDR allowed to SSH (default: your public IP /32).",
    metavar="CIDR",
)
@setting_option(
    "--ssh-user", setting="ssh_user", help="Login user (default from the AMI).", metavar="USER"
)
@setting_option(
    "--ssh-timeout",
    setting="ssh_timeout",
    type=int,
    help="Seconds to wait for SSH (default 600).",
    metavar="S",
)
@setting_option(
    "--budget",
    setting="budget",
    type=float,
    metavar="USD",
    help="Stop the environment once it has cost USD from now (enforced on the machine, so it "
    "holds while your laptop is closed; `dlenv budget NAME` changes it).",
)
@click.option(
    "--no-provision", is_flag=True, help="Launch only: return once the instance runs (no SSH wait)."
)
@click.option(
    "--count",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Launch N unrelated environments NAME-1..NAME-N (provisioned in parallel, a log each); "
    "for one torchrun job across machines use --nodes.",
)
@click.option(
    "--nodes",
    type=click.IntRange(2, 64),
    default=None,
    metavar="N",
    help="Launch a cluster: N nodes NAME-0..NAME-{N-1} in one call, one zone, one placement "
    "group, a security group open between them only; each node knows the cluster "
    "(/etc/dlenv/cluster.env) for `dlenv run NAME -- torchrun ...`.",
)
@click.option(
    "--efa/--no-efa",
    "efa",
    default=None,
    help="With --nodes: EFA network interfaces and the EFA software (default: on where the "
    "type has EFA, e.g. p4d, p5, g5.48xlarge).",
)
@click.option(
    "--workdir",
    type=click.Path(exists=True, file_okay=False),
    metavar="DIR",
    help="Upload DIR into the notebook's ~/work after provisioning (as `dlenv sync NAME DIR --up`).",
)
@stack_options
@yes_option
@aws_options
@click.pass_obj
def up(
    app: App,
    /,
    name: str,
    no_provision: bool,
    count: int,
    nodes: int | None,
    efa: bool | None,
    yes: bool,
    **flags: Any,
) -> None:
    """Launch a GPU environment NAME (or start it if stopped), then provision it.

    \b
    Example:  dlenv up mybox --instance g4dn.xlarge --spot --spot-fallback on-demand
              dlenv up node --count 4        (node-1 .. node-4, provisioned in parallel)
              dlenv up train --nodes 4 -t p5.48xlarge   (a cluster: train-0 .. train-3, EFA)
    """
    import contextlib

    from dlenv.cli.provision import build_options
    from dlenv.errors import DlenvError
    from dlenv.ops import lifecycle
    from dlenv.statefile import env_lock

    stack_flags = {k: flags.pop(k) for k in STACK_FLAGS}
    workdir = flags.pop("workdir")
    if workdir and no_provision:
        raise DlenvError(
            "--workdir uploads after provisioning, and --no-provision skips it",
            f"drop one; later: `dlenv provision {name}` then `dlenv sync {name} DIR --up`",
        )
    if workdir:
        from dlenv.ops.sync import local_rsync

        local_rsync()  # missing rsync: one line before anything is launched
    settings = app.settings(**flags)
    if not no_provision:
        build_options(settings, **stack_flags)  # bad flags fail before anything is created
    if nodes is not None or efa is not None:
        _cluster(app, name, nodes, efa, count, no_provision, yes, settings, stack_flags, workdir)
        return
    names = [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]
    for each in names:
        lifecycle.validate_name(each)
    term = app.terminal
    if count > 1 and not term.confirm(
        f"Launch {count} environments {names[0]} .. {names[-1]} ({settings.instance})?",
        assume_yes=yes,
    ):
        raise DlenvError("launch cancelled", "nothing was created")
    # Each environment's lock is held from launch through provisioning: a second `up`, a
    # `down` or a `provision` of the same name waits (one visible line) instead of racing.
    with contextlib.ExitStack() as locks:
        for each in names:
            locks.enter_context(env_lock(each, say=term.info))
        _up_locked(name, names, settings, stack_flags, no_provision, count, yes, term)
        if workdir:
            _upload(names, workdir, settings, term)


def _up_locked(
    name: str,
    names: list[str],
    settings: Settings,
    stack_flags: dict[str, Any],
    no_provision: bool,
    count: int,
    yes: bool,
    term: Terminal,
) -> None:
    """Launch (or resume) every name, then provision them; the caller holds their locks."""
    import copy

    from dlenv.ops import lifecycle

    results: list[tuple[str, Settings, UpResult]] = []
    for each in names:
        env_settings = copy.deepcopy(settings)  # an existing env may fill in its own choices
        result = lifecycle.up(
            each,
            env_settings,
            term,
            yes=yes or count > 1,
            wait_ssh=not no_provision,
            instance_explicit="instance" in settings.sources,
        )
        env = result.env
        if result.action == "launched":
            term.success(
                f"{each} is running: {env.instance_id} {env.instance_type} in {env.az}, IP {env.public_ip}"
            )
        results.append((each, env_settings, result))
    if no_provision:
        for each, _, _ in results:
            term.info(f"connect: dlenv ssh {each}   (or: ssh dlenv-{each} once SSH is up)")
        term.info(f"provision later: dlenv provision {name if count == 1 else 'NAME'}")
        return
    _provision(results, stack_flags, term)
    shown = name if count == 1 else names[0]
    term.info(
        f"next: dlenv jupyter {shown}   |   dlenv smoke-test {shown}   |   ssh dlenv-{shown}   |   dlenv down {shown}"
    )


def _cluster(
    app: App,
    name: str,
    nodes: int | None,
    efa: bool | None,
    count: int,
    no_provision: bool,
    yes: bool,
    settings: Settings,
    stack_flags: dict[str, Any],
    workdir: str | None,
) -> None:
    """`up NAME --nodes N`: the cluster launched whole (dlenv.ops.cluster_up), provisioned in
    parallel like --count, then every node told about the others."""
    import contextlib

    from dlenv.errors import UsageError
    from dlenv.ops import cluster_up
    from dlenv.statefile import env_lock

    if nodes is None:
        raise UsageError(
            "--efa/--no-efa applies to clusters",
            f"add --nodes N: `dlenv up {name} --nodes 2 --efa`",
        )
    if count != 1:
        raise UsageError(
            "--count and --nodes do not go together",
            "--nodes N makes one cluster; --count N makes N unrelated environments",
        )
    request = cluster_up.check_request(name, nodes, settings, efa)
    term = app.terminal
    with contextlib.ExitStack() as locks:
        for each in [name, *request.node_names]:
            locks.enter_context(env_lock(each, say=term.info))
        made = cluster_up.up(request, settings, term, yes=yes, wait_ssh=not no_provision)
        results = made.results
        if no_provision:
            term.info(
                f"connect: dlenv ssh {request.node_names[0]}   provision later: dlenv up {name} --nodes {nodes}"
            )
            return
        _provision(results, stack_flags, term, efa=made.efa)
        cluster_up.configure(name, results, settings, term)
        term.success(
            f"cluster {name}: {nodes} nodes provisioned, each knows the cluster (/etc/dlenv/cluster.env)"
        )
        if workdir:
            _upload([each for each, _, _ in results], workdir, settings, term)
    term.info(
        f"next: dlenv run {name} -- hostname   |   dlenv status {name}   |   dlenv down {name}"
    )


def _upload(names: list[str], workdir: str, settings: Settings, term: Terminal) -> None:
    """`--workdir DIR`: DIR into each environment's ~/work (the sync's rules: .gitignore...)."""
    from dlenv.ops import sync

    for each in names:
        remote = sync.environment_remote(each, settings, term)
        sync.mark_work(each, settings)
        result = sync.sync(remote, workdir, "up", term)
        term.success(f"uploaded {result.local} -> {result.remote} in {result.seconds:.1f}s")


def _provision(
    results: list[tuple[str, Settings, UpResult]],
    stack_flags: dict[str, Any],
    term: Terminal,
    *,
    efa: bool = False,
) -> None:
    """One environment through provision_environment; several in parallel (a log per host).

    `efa`: the hosts have EFA interfaces (a cluster's nodes): the plan includes the efa step."""
    import dataclasses

    from dlenv.cli.provision import build_options
    from dlenv.ops import lifecycle
    from dlenv.provision import runner

    if len(results) == 1:
        [(each, env_settings, result)] = results
        # the environment's recorded choices (python manager, idle stop) may have filled settings in
        options = build_options(env_settings, **stack_flags)
        runner.provision_environment(each, result.ssh_target, env_settings, term, options=options)
        lifecycle.record_choices(each, env_settings, result.env.instance_id)
        _budget(each, env_settings, result, term)
        return
    first_settings = results[0][1]
    options = dataclasses.replace(build_options(first_settings, **stack_flags), efa=efa)
    targets = [result.ssh_target.with_(name=each) for each, _, result in results]
    host_results = runner.provision(targets, options, term)
    runner.raise_for_failures(host_results)
    for each, env_settings, result in results:
        lifecycle.record_choices(each, env_settings, result.env.instance_id)
        _budget(each, env_settings, result, term)
    term.success(f"provisioned {len(results)} environments")


def _budget(each: str, env_settings: Settings, result: UpResult, term: Terminal) -> None:
    """`--budget USD`: the machine enforces it from now (once: the same budget is not reset)."""
    if env_settings.budget is None:
        return
    from dlenv.cloud.session import from_settings
    from dlenv.provision import idle

    amount = float(env_settings.budget)
    if result.env.tags.get(idle.BUDGET_TAG) == f"{amount:.2f}":
        term.info(f"{each}: budget ${amount:.2f} already set (`dlenv budget {each}`: the spend)")
        return
    price = idle.set_budget(from_settings(env_settings), result.env, result.ssh_target, amount)
    term.success(
        f"{each}: budget ${amount:.2f}: it stops itself after about {amount / price:.1f} "
        f"running hours at {price:.3f} $/h (warning at 80 %)"
    )
