"""Options shared by several commands, declared once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

F = Callable[..., Any]


def json_option(func: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table."
    )(func)


def yes_option(func: F) -> F:
    return click.option(
        "-y",
        "--yes",
        is_flag=True,
        help="Do not ask for confirmation (required when stdin is not a terminal).",
    )(func)


def setting_option(*decls: str, setting: str, help: str, **kwargs: Any) -> Callable[[F], F]:
    """An option backed by a setting: its env var and dlenv.toml key are named in --help.

    The option's default is None so that an omitted flag never overrides dlenv.toml or the
    environment; `App.settings()` applies only flags the user gave.
    """
    env = f"DLENV_{setting.upper()}"
    return click.option(
        *decls, setting, default=None, help=f"{help} [env: {env}; dlenv.toml: {setting}]", **kwargs
    )


def identity_option(func: F) -> F:
    """-i KEY: the private key for the `--host` boxes of a command."""
    return click.option("-i", "--identity", metavar="KEY", help="Private key for --host.")(func)


def trust_new_host_key_option(func: F) -> F:
    """--trust-new-host-key: record an unknown `--host` box's key (the host-key policy's
    trust-on-first-use, which is otherwise asked on a terminal or refused)."""
    return click.option(
        "--trust-new-host-key",
        is_flag=True,
        help="--host: record a box's host key when no known_hosts has it yet (check it first).",
    )(func)


def host_options(func: F) -> F:
    """--host USER@HOST[:PORT], -i KEY and --trust-new-host-key: a command that reaches any SSH
    box as well as an environment (the values go to `dlenv.ops.targets.resolve_target`)."""
    func = trust_new_host_key_option(func)
    func = identity_option(func)
    return click.option(
        "--host", metavar="USER@HOST[:PORT]", help="Any SSH box instead of an environment."
    )(func)


def aws_options(func: F) -> F:
    """--region/--profile on the command itself too (`dlenv up x --region eu-west-1`).

    `dlenv --region X CMD` (the group's option) and `dlenv CMD --region X` both reach AWS; given
    at both levels, the command's wins. Left unset here, the value is None and `App.settings`
    drops it, so it never hides the group's (tests/cli/test_global_flags.py runs every command
    both ways). A command that talks to AWS takes these options.
    """
    func = click.option(
        "--profile",
        "profile",
        default=None,
        metavar="NAME",
        help="AWS profile. [env: AWS_PROFILE, DLENV_PROFILE]",
    )(func)
    return click.option(
        "--region",
        "region",
        default=None,
        metavar="REGION",
        help="AWS region. [env: AWS_REGION, AWS_DEFAULT_REGION, DLENV_REGION]",
    )(func)
