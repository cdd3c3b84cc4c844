"""`dlenv stop NAME` / `dlenv start NAME`."""

from __future__ import annotations

import click

from dlenv.cli.options import aws_options


@click.command()
@click.argument("name")
@aws_options
@click.pass_obj
def stop(app, name: str, **aws_flags) -> None:
    """Stop NAME: the disk and everything on it (~/work, installed packages) stay; compute
    billing stops (the disk's storage is still billed)."""
    from dlenv import lifecycle
    from dlenv.sync import work_dir

    env = lifecycle.stop(name, app.settings(**aws_flags), app.terminal)
    app.terminal.success(
        f"{name} is {env.state}; its disk is kept, with everything in ~/{work_dir()}; "
        f"`dlenv start {name}` resumes it"
    )


@click.command()
@click.argument("name")
@click.option(
    "-t",
    "--instance",
    "instance_type",
    metavar="TYPE",
    help="Change the stopped instance's type first (same disk): the way back when its own "
    "type has no capacity. Checked: same architecture, a GPU the stack supports.",
)
@aws_options
@click.pass_obj
def start(app, name: str, instance_type: str | None, **aws_flags) -> None:
    """Start a stopped environment NAME (its IP changes; ssh config is updated)."""
    from dlenv import lifecycle

    env = lifecycle.start(
        name, app.settings(**aws_flags), app.terminal, instance_type=instance_type
    )
    app.terminal.success(f"{name} is {env.state} at {env.public_ip}")
