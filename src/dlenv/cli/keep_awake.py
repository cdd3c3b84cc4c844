"""`dlenv keep-awake`: hold off the idle auto-stop for a while (a long job without a terminal).

Only click is imported at module level (`dlenv --help` imports every command module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from dlenv.cli.options import aws_options, host_options

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.command("keep-awake")
@click.argument("name", required=False)
@click.argument("duration", required=False)
@click.option("--off", is_flag=True, help="Let the idle auto-stop count again from now.")
@host_options
@aws_options
@click.pass_obj
def keep_awake(
    app: App,
    /,
    name: str | None,
    duration: str | None,
    off: bool,
    host: str | None,
    identity: str | None,
    trust_new_host_key: bool,
    region: str | None = None,
    profile: str | None = None,
) -> None:
    """Keep an environment up for DURATION even when nothing looks busy.

    \b
    The idle auto-stop counts terminals, running commands, busy Jupyter kernels and the GPU;
    a job it cannot see (a CPU job under nohup, a download) needs this:
      dlenv keep-awake mybox 3h        stays up until 3 hours from now, then idle counts again
      dlenv keep-awake mybox --off     back to normal now
      (on the host: touch ~/.config/dlenv/keep-awake gives one more idle window)
    """
    from dlenv.errors import DlenvError, UsageError
    from dlenv.provision import idle

    if host and name and not duration:
        name, duration = None, name  # `keep-awake --host u@h 3h`
    if off == bool(duration):
        raise UsageError(
            "give a DURATION (e.g. 3h) or --off",
            "dlenv keep-awake NAME 3h, or dlenv keep-awake NAME --off",
        )
    seconds = idle.parse_duration(duration) if duration else 0
    from dlenv.ops.targets import resolve_target
    from dlenv.ssh.session import SshHost

    label, target = resolve_target(
        name,
        host,
        identity,
        app.settings(region=region, profile=profile),
        app.terminal,
        yes=False,
        trust_new_host_key=trust_new_host_key,
    )
    with SshHost(target) as box:
        res = box.run(idle.clear_command() if off else idle.keep_awake_command(seconds))
    out = res.output.strip().splitlines()[-1:] or [""]
    if res.exit_code != 0:
        raise DlenvError(f"could not write the keep-awake file on {label}: {out[0]}", host=label)
    if off:
        app.terminal.success(f"{label}: keep-awake cleared; the idle auto-stop counts from now")
        return
    if not out[0].isdigit():
        raise DlenvError(f"{label} answered {out[0]!r} instead of a deadline", host=label)
    app.terminal.success(
        f"{label} stays up until {idle.format_deadline(int(out[0]))} "
        "(the idle auto-stop counts again after that; `--off` ends it sooner)"
    )
