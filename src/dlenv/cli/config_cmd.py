"""`dlenv config`: the resolved settings and where each value came from."""

from __future__ import annotations

import click

from dlenv.cli.options import json_option


@click.command("config")
@json_option
@click.pass_obj
def config_cmd(app, as_json: bool) -> None:
    """Show every setting, its value and its source (default, dlenv.toml, env var, flag)."""
    from dlenv import config

    settings = app.settings()
    rows = [
        (name, getattr(settings, name), settings.sources.get(name, "default"))
        for name in config.setting_names()
    ]
    if as_json:
        app.terminal.json({n: {"value": v, "source": s} for n, v, s in rows})
        return
    app.terminal.table(
        ["SETTING", "VALUE", "SOURCE"], [[n, "" if v is None else v, s] for n, v, s in rows]
    )
    files = config.config_files()
    app.terminal.note(
        "config files: " + (", ".join(map(str, files)) if files else "none (dlenv.toml)")
    )
