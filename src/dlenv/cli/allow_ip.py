"""`dlenv allow-ip NAME`: point NAME's SSH rule at your current IP (laptops change networks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, setting_option

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.command("allow-ip")
@click.argument("name")
@setting_option(
    "--allow-cidr",
    setting="allow_cidr",
    help="CIDR to allow instead of your detected IP /32.",
    metavar="CIDR",
)
@aws_options
@click.pass_obj
def allow_ip(app: App, /, name: str, **flags: Any) -> None:
    """Replace NAME's SSH ingress rule with your current public IP (/32) or --allow-cidr."""
    from dlenv.ops.lifecycle import allow_ip as allow

    cidr = allow(name, app.settings(**flags), app.terminal)
    app.terminal.success(f"{name}: SSH now allowed from {cidr} only")
