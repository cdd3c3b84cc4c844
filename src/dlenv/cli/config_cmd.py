"""`dlenv config [trust|untrust]`: the resolved settings, where each came from, file trust.

`dlenv config` alone (and `--json`) shows the settings as it always did; `trust`/`untrust`
record which project dlenv.toml files may set the settings that run commands or widen who can
reach an instance (see `dlenv.config.NEEDS_TRUST`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, json_option

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.group("config", invoke_without_command=True)
@json_option
@aws_options
@click.pass_context
def config_cmd(ctx: click.Context, /, as_json: bool, **aws_flags: Any) -> None:
    """Show every setting, its value and its source (default, dlenv.toml, env var, flag).

    \b
    dlenv config                       settings, sources, config files and their trust
    dlenv config trust [PATH]          let this project dlenv.toml set every setting
    dlenv config untrust PATH          back to preferences only
    """
    if ctx.invoked_subcommand is None:
        _show(ctx.obj, as_json, aws_flags)


def _show(app: Any, as_json: bool, aws_flags: dict[str, Any]) -> None:
    from dlenv import config

    settings = app.settings(**aws_flags)
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
    files = config.describe_files()
    if not files:
        app.terminal.note("config files: none (dlenv.toml)")
    for f in files:
        state = {
            "user": "your config, trusted",
            "trusted": "project config, trusted",
            "untrusted": "project config, NOT trusted: only preferences apply",
            "changed": "project config, CHANGED since trusted: only preferences apply",
        }[f.trust]
        app.terminal.note(f"config file: {f.path} ({state})")


def _project_path(path: Path | None) -> Path:
    from dlenv import config
    from dlenv.errors import UsageError

    if path is not None:
        return path
    found = config.project_file()
    if found is None:
        raise UsageError(
            f"no dlenv.toml in {Path.cwd()} or its parents",
            "give its path: dlenv config trust PATH",
        )
    return found


@config_cmd.command("trust")
@click.argument("path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def trust(app: App, /, path: Path | None) -> None:
    """Trust PATH (default: the project dlenv.toml here) with every setting, as it is now.

    Its sha256 is recorded in your config dir: if the file changes, it is untrusted again until
    you look at it and trust it again. Read it first: a trusted file may set a ProxyCommand
    (a command run on this machine) and who may reach SSH (allow_cidr).
    """
    from dlenv import config

    where, digest, changed = config.trust(_project_path(path))
    if changed:
        app.terminal.success(f"trusted {where} (sha256 {digest[:16]}...)")
    else:
        app.terminal.info(f"{where} was already trusted as it is (sha256 {digest[:16]}...)")


@config_cmd.command("untrust")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_obj
def untrust(app: App, /, path: Path) -> None:
    """Forget that PATH is trusted: only its harmless preferences apply again."""
    from dlenv import config

    if config.untrust(path):
        app.terminal.success(f"untrusted {path.expanduser().resolve()}")
    else:
        app.terminal.info(f"{path} was not trusted; nothing changed")
