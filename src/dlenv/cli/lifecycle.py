"""`dlenv stop NAME` / `dlenv start NAME`."""

from __future__ import annotations

import click

from dlenv.cli.options import aws_options


@click.command()
@click.argument("name")
@aws_options
@click.pass_obj
def stop(app, name: str, **aws_flags) -> None:
    """Stop NAME (the disk and its data stay; compute billing stops)."""
    from dlenv import lifecycle

    env = lifecycle.stop(name, app.settings(**aws_flags), app.terminal)
    app.terminal.success(f"{name} is {env.state}; `dlenv start {name}` resumes it")


@click.command()
@click.argument("name")
@aws_options
@click.pass_obj
def start(app, name: str, **aws_flags) -> None:
    """Start a stopped environment NAME (its IP changes; ssh config is updated)."""
    from dlenv import lifecycle

    env = lifecycle.start(name, app.settings(**aws_flags), app.terminal)
    app.terminal.success(f"{name} is {env.state} at {env.public_ip}")
