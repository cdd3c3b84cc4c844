"""`dlenv up NAME`: launch (or resume) an environment, wait for SSH, provision it.

Flags only: what they mean together is checked here, what `up` then does is
`dlenv.ops.up.execute` (one environment, `--count`, or a cluster with `--nodes`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, setting_option, yes_option
from dlenv.cli.provision import STACK_FLAGS, stack_options

if TYPE_CHECKING:
    from dlenv.cli._app import App


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
    import functools
    from pathlib import Path

    from dlenv.cli.provision import build_options
    from dlenv.errors import DlenvError, UsageError
    from dlenv.ops.up import UpRequest, execute

    stack_flags = {k: flags.pop(k) for k in STACK_FLAGS}
    workdir = flags.pop("workdir")
    if workdir and no_provision:
        raise DlenvError(
            "--workdir uploads after provisioning, and --no-provision skips it",
            f"drop one; later: `dlenv provision {name}` then `dlenv sync {name} DIR --up`",
        )
    settings = app.settings(**flags)
    if not no_provision:
        build_options(settings, **stack_flags)  # bad flags fail before anything is created
    if efa is not None and nodes is None:
        raise UsageError(
            "--efa/--no-efa applies to clusters",
            f"add --nodes N: `dlenv up {name} --nodes 2 --efa`",
        )
    if nodes is not None and count != 1:
        raise UsageError(
            "--count and --nodes do not go together",
            "--nodes N makes one cluster; --count N makes N unrelated environments",
        )
    request = UpRequest(
        name,
        settings,
        functools.partial(build_options, **stack_flags),
        count=count,
        nodes=nodes,
        efa=efa,
        provision=not no_provision,
        yes=yes,
        workdir=Path(workdir) if workdir else None,
    )
    execute(request, app.terminal)
