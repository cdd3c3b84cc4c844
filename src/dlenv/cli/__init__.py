"""The `dlenv` command line: a thin, lazily loaded layer over the library.

Each command lives in its own module and is imported only when invoked (or when `--help` lists
it), and command modules import only click at top level, so `dlenv --help` stays fast and never
loads boto3, Fabric/paramiko or the Docker SDK.
"""

from __future__ import annotations

import os
import sys

import click

from dlenv import __version__
from dlenv.cli._app import App
from dlenv.cli._lazy import LazyGroup

COMMANDS: dict[str, str] = {
    "up": "dlenv.cli.up:up",
    "status": "dlenv.cli.status:status",
    "ssh": "dlenv.cli.ssh:ssh",
    "stop": "dlenv.cli.lifecycle:stop",
    "start": "dlenv.cli.lifecycle:start",
    "down": "dlenv.cli.down:down",
    "doctor": "dlenv.cli.doctor:doctor",
    "prices": "dlenv.cli.prices:prices",
    "provision": "dlenv.cli.provision:provision",
    "jupyter": "dlenv.cli.jupyter:jupyter",
    "smoke-test": "dlenv.cli.smoke_test:smoke_test",
    "build": "dlenv.cli.build:build",
    "local": "dlenv.cli.local:local",
    "config": "dlenv.cli.config_cmd:config_cmd",
    "allow-ip": "dlenv.cli.allow_ip:allow_ip",
    "ami": "dlenv.cli.ami:ami",
    "ssh-key": "dlenv.cli.ssh_key:ssh_key",
    "sync": "dlenv.cli.sync:sync",
    "keep-awake": "dlenv.cli.keep_awake:keep_awake",
    "budget": "dlenv.cli.budget:budget",
    "run": "dlenv.cli.run:run",
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--region",
    default=None,
    metavar="REGION",
    help="AWS region. [env: AWS_REGION, AWS_DEFAULT_REGION]",
)
@click.option("--profile", default=None, metavar="NAME", help="AWS profile. [env: AWS_PROFILE]")
@click.option(
    "--debug", is_flag=True, help="Show tracebacks and AWS request details. [env: DLENV_DEBUG]"
)
@click.version_option(__version__, "-V", "--version", prog_name="dlenv")
@click.pass_context
def cli(ctx: click.Context, /, region: str | None, profile: str | None, debug: bool) -> None:
    """dlenv: a GPU JupyterLab, proven by a real training job, in one command.

    \b
    Local notebook (no AWS):  dlenv local up
    On EC2:                   dlenv up mybox --instance g4dn.xlarge
                              dlenv jupyter mybox
                              dlenv down mybox
    """
    ctx.obj = App(
        global_flags={"region": region, "profile": profile}, debug=debug or _debug_requested()
    )


def _debug_requested() -> bool:
    return "--debug" in sys.argv[1:] or os.environ.get("DLENV_DEBUG", "") not in {"", "0"}


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the CLI and turns failures into one line + exit code."""
    from dlenv.cli._errors import run_cli

    sys.exit(run_cli(cli, argv, debug=_debug_requested()))
