"""`dlenv doctor`: credentials, region, GPU quota, ssh client, docker; each OK or what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, json_option

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.command()
@click.option("--no-aws", is_flag=True, help="Skip the AWS checks (local notebooks only).")
@json_option
@aws_options
@click.pass_obj
def doctor(app: App, /, no_aws: bool, as_json: bool, **aws_flags: Any) -> None:
    """Check that this machine and AWS account can run dlenv; exit 1 if anything fails."""
    from dlenv.ops.doctor import run_checks

    checks = run_checks(app.settings(**aws_flags), aws=not no_aws)
    failed = [c for c in checks if c.status == "FAIL"]
    if as_json:
        app.terminal.json({"ok": not failed, "checks": [c.__dict__ for c in checks]})
    else:
        colour = {
            "OK": "[green]OK[/green]",
            "WARN": "[yellow]WARN[/yellow]",
            "FAIL": "[red]FAIL[/red]",
        }
        from rich.markup import escape
        from rich.table import Table

        table = Table(header_style="bold")
        for col in ("CHECK", "STATUS", "DETAIL"):
            table.add_column(col, overflow="fold")
        for c in checks:
            table.add_row(escape(c.name), colour[c.status], escape(c.detail))
        app.terminal.out.print(table)
    if failed:
        raise SystemExit(1)
