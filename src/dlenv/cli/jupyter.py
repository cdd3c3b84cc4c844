"""`dlenv jupyter [NAME | --host USER@HOST]`: tunnel to JupyterLab and print its URL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, identity_option, trust_new_host_key_option, yes_option

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.command()
@click.argument("name", required=False)
@click.option(
    "--host", metavar="USER@HOST[:PORT]", help="Any SSH box provisioned by dlenv (no AWS)."
)
@identity_option
@click.option(
    "--port", default=8888, show_default=True, help="Local port (the next free one if taken)."
)
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.option("--background", is_flag=True, help="Leave the tunnel running; `--stop` ends it.")
@click.option("--stop", "stop", is_flag=True, help="Close background tunnels (NAME's, or all).")
@trust_new_host_key_option
@yes_option
@aws_options
@click.pass_obj
def jupyter(
    app: App,
    /,
    name: str | None,
    host: str | None,
    identity: str | None,
    port: int,
    no_browser: bool,
    background: bool,
    stop: bool,
    trust_new_host_key: bool,
    yes: bool,
    **aws_flags: Any,
) -> None:
    """Open an SSH tunnel to NAME's JupyterLab and print http://127.0.0.1:PORT/lab?token=...

    \b
    dlenv jupyter mybox                    foreground; Ctrl-C closes it
    dlenv jupyter mybox --background       keep it open; dlenv status lists it
    dlenv jupyter --stop                   close background tunnels
    """
    if stop:
        from dlenv.ssh import tunnel

        closed = tunnel.stop_background(name, app.terminal.warn)
        app.terminal.info(
            f"closed: {', '.join(closed)}" if closed else "no background tunnel was open"
        )
        return
    from dlenv.ops.jupyter_access import open_jupyter

    open_jupyter(
        name,
        host,
        identity,
        app.settings(**aws_flags),
        app.terminal,
        port=port,
        browser=not no_browser,
        background=background,
        yes=yes,
        trust_new_host_key=trust_new_host_key,
    )
