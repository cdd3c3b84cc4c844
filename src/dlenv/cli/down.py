"""`dlenv down NAME`: terminate and remove everything dlenv created for it."""

from __future__ import annotations

import click

from dlenv.cli.options import aws_options, yes_option


@click.command()
@click.argument("name")
@click.option("--keep-key", is_flag=True, help="Keep the EC2 key pair and the local private key.")
@yes_option
@aws_options
@click.pass_obj
def down(app, name: str, keep_key: bool, yes: bool, **aws_flags) -> None:
    """Terminate NAME and delete its security group, key pair and ssh config entry.

    The root volume is deleted with the instance: copy out what you need first.
    """
    from dlenv import lifecycle
    from dlenv.errors import DlenvError

    if not app.terminal.confirm(f"Terminate {name} and delete its disk?", assume_yes=yes):
        raise DlenvError("cancelled", "nothing was changed")
    result = lifecycle.down(name, app.settings(**aws_flags), app.terminal, keep_key=keep_key)
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
