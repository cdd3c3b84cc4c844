"""`dlenv ssh NAME | --host USER@HOST[:PORT] [-- CMD...]`: the system ssh client with dlenv's
verified settings (the same host-key trust model as every other dlenv connection)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, host_options

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name", required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@host_options
@aws_options
@click.pass_obj
def ssh(
    app: App,
    /,
    name: str | None,
    command: tuple[str, ...],
    host: str | None,
    identity: str | None,
    trust_new_host_key: bool,
    **aws_flags: Any,
) -> None:
    """Open a shell on NAME, or run COMMAND there (`dlenv ssh mybox -- nvidia-smi`).

    \b
    dlenv ssh mybox                              an environment made by `dlenv up`
    dlenv ssh --host ubuntu@10.1.2.3 -i KEY      any SSH box (host key checked like OpenSSH)
    """
    import os

    from dlenv.errors import UsageError
    from dlenv.ssh import openssh

    if host and name:
        # `dlenv ssh --host u@h nvidia-smi`: the first word of the command lands in NAME
        command = (name, *command)
        name = None
    if bool(name) == bool(host):
        raise UsageError(
            "give an environment NAME or --host USER@HOST (one of them)",
            "e.g. `dlenv ssh mybox` or `dlenv ssh --host ubuntu@10.0.0.5 -i key`",
        )
    settings = app.settings(**aws_flags)
    if host:
        from dlenv.ssh.target import from_host_flag

        target = from_host_flag(host, identity, settings.ssh_proxy_command)
        openssh.prepare(target, trust_new=trust_new_host_key, say=app.terminal.info)
        binary = openssh.ssh_binary()
        # ends with `-- HOST`: the command's words follow as they are
        args = [binary, *openssh.ssh_options(target, batch=bool(command)), *command]
    else:
        assert name is not None  # exactly one of NAME and --host: checked above
        from dlenv.cloud.instances import ssh_target_for
        from dlenv.ssh import config

        target = ssh_target_for(name, settings)  # refreshes the IP (it changes on start)
        config.write_entry(name, target)
        binary = openssh.ssh_binary()
        args = [binary, "-F", str(config.include_path()), config.host_alias(name)]
        if command:
            args += ["--", *command]
    os.execv(binary, args)
