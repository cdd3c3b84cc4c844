"""`dlenv allow-ip NAME`: point NAME's SSH rule at your current IP (laptops change networks)."""

from __future__ import annotations

import click

from dlenv.cli.options import aws_options, setting_option


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
def allow_ip(app, name: str, **flags) -> None:
    """Replace NAME's SSH ingress rule with your current public IP (/32) or --allow-cidr."""
    from dlenv.lifecycle import allow_ip as allow

    cidr = allow(name, app.settings(**flags), app.terminal)
    app.terminal.success(f"{name}: SSH now allowed from {cidr} only")
