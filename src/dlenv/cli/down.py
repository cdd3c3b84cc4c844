"""`dlenv down NAME...`: terminate and remove everything dlenv created for each."""

from __future__ import annotations

import click

from dlenv.cli.options import aws_options, yes_option


@click.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--keep-key", is_flag=True, help="Keep the EC2 key pair and the local private key.")
@yes_option
@aws_options
@click.pass_obj
def down(app, names: tuple[str, ...], keep_key: bool, yes: bool, **aws_flags) -> None:
    """Terminate NAME (or several) and delete its security group, key pair and ssh entry.

    The root volume is deleted with the instance: copy out what you need first.
    """
    from dlenv import lifecycle
    from dlenv.errors import DlenvError

    listed = ", ".join(names)
    if not app.terminal.confirm(f"Terminate {listed} and delete the disk(s)?", assume_yes=yes):
        raise DlenvError("cancelled", "nothing was changed")
    settings = app.settings(**aws_flags)
    for name in names:
        result = lifecycle.down(name, settings, app.terminal, keep_key=keep_key)
        removed = [
            x
            for x, ok in (
                ("instance " + (result.instance or ""), result.instance),
                ("security group", result.security_group),
                ("key pair", result.key_pair),
                ("ssh config entry", result.ssh_entry),
            )
            if ok
        ]
        app.terminal.success(f"{name} removed: {', '.join(removed) or 'nothing was left'}")
