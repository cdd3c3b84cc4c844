"""`dlenv ssh NAME [-- CMD...]`: the system ssh client with dlenv's verified config."""

from __future__ import annotations

import click

from dlenv.cli.options import aws_options


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@aws_options
@click.pass_obj
def ssh(app, name: str, command: tuple[str, ...], **aws_flags) -> None:
    """Open a shell on NAME, or run COMMAND there (`dlenv ssh mybox -- nvidia-smi`)."""
    import os
    import shutil

    from dlenv import sshconfig
    from dlenv.cloud.instances import ssh_target_for
    from dlenv.errors import DlenvError

    settings = app.settings(**aws_flags)
    target = ssh_target_for(name, settings)  # refreshes the IP (it changes on start)
    sshconfig.write_entry(name, target)
    binary = shutil.which("ssh")
    if binary is None:
        raise DlenvError(
            "no ssh client found", "install OpenSSH (e.g. `apt-get install openssh-client`)"
        )
    args = [binary, "-F", str(sshconfig.include_path()), sshconfig.host_alias(name)]
    if command:
        args += ["--", *command]
    os.execv(binary, args)
