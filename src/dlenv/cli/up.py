"""`dlenv up NAME`: launch (or resume) an environment, wait for SSH, provision it."""

from __future__ import annotations

import click

from dlenv.cli.options import aws_options, setting_option, yes_option
from dlenv.cli.provision import STACK_FLAGS, stack_options


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
@click.option(
    "--no-provision", is_flag=True, help="Launch only: return once the instance runs (no SSH wait)."
)
@stack_options
@yes_option
@aws_options
@click.pass_obj
def up(app, name: str, no_provision: bool, yes: bool, **flags) -> None:
    """Launch a GPU environment NAME (or start it if stopped), then provision it.

    \b
    Example:  dlenv up mybox --instance g4dn.xlarge --spot --spot-fallback on-demand
    """
    from dlenv import lifecycle
    from dlenv.cli.provision import build_options

    stack_flags = {k: flags.pop(k) for k in STACK_FLAGS}
    settings = app.settings(**flags)
    options = (
        None if no_provision else build_options(settings, **stack_flags)
    )  # bad flags fail first
    instance_explicit = "instance" in settings.sources
    result = lifecycle.up(
        name,
        settings,
        app.terminal,
        yes=yes,
        wait_ssh=not no_provision,
        instance_explicit=instance_explicit,
    )
    env = result.env
    term = app.terminal
    if result.action == "launched":
        term.success(
            f"{name} is running: {env.instance_id} {env.instance_type} in {env.az}, IP {env.public_ip}"
        )
    if no_provision:
        term.info(f"connect: dlenv ssh {name}   (or: ssh dlenv-{name} once SSH is up)")
        term.info(f"provision later: dlenv provision {name}")
        return
    from dlenv.provision.runner import provision_environment

    # the environment's recorded choices (python manager, idle stop) may have filled settings in
    options = build_options(settings, **stack_flags)
    provision_environment(name, result.target, settings, term, options=options)
    lifecycle.record_choices(name, settings)
    term.info(
        f"next: dlenv jupyter {name}   |   dlenv smoke-test {name}   |   ssh dlenv-{name}   |   dlenv down {name}"
    )
