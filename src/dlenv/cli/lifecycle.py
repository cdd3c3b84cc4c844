"""`dlenv stop NAME` / `dlenv start NAME`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.command()
@click.argument("name")
@aws_options
@click.pass_obj
def stop(app: App, /, name: str, **aws_flags: Any) -> None:
    """Stop NAME: the disk and everything on it (~/work, installed packages) stay; compute
    billing stops (the disk's storage is still billed)."""
    from dlenv.ops import power
    from dlenv.ops.sync import work_dir

    env = power.stop(name, app.settings(**aws_flags), app.terminal)
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
@click.option(
    "--move",
    is_flag=True,
    help="Move the stopped environment to another zone of its region that offers its type "
    "(snapshot of the disk, new instance there with the same key, security group, name and "
    "tags; the old instance and the snapshot go only once the new one runs).",
)
@aws_options
@click.pass_obj
def start(app: App, /, name: str, instance_type: str | None, move: bool, **aws_flags: Any) -> None:
    """Start a stopped environment NAME (its IP changes; ssh config is updated)."""
    from dlenv.ops import power

    if move:
        from dlenv.errors import UsageError
        from dlenv.ops.move import move as move_env

        if instance_type:
            raise UsageError(
                "--move and --instance are two different ways out: pick one",
                f"`dlenv start {name} --instance TYPE` keeps the zone; "
                f"`dlenv start {name} --move` keeps the type",
            )
        moved = move_env(name, app.settings(**aws_flags), app.terminal)
        app.terminal.success(
            f"{name} moved {moved.old_zone} -> {moved.new_zone}: {moved.new_instance} is "
            f"{moved.env.state} at {moved.env.public_ip} (disk, key, security group and tags "
            f"kept; {moved.old_instance} and the snapshot removed)"
        )
        return
    env = power.start(name, app.settings(**aws_flags), app.terminal, instance_type=instance_type)
    app.terminal.success(f"{name} is {env.state} at {env.public_ip}")
