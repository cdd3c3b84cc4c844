"""`dlenv ssh-key import | path | list`: an environment's private key on another machine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, json_option

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.group("ssh-key")
def ssh_key() -> None:
    """The private keys of your environments: where they are, and bringing one to this machine.

    \b
    dlenv keeps one key pair per environment: the private key on the machine that ran
    `dlenv up`, its public half in EC2 as key pair dlenv-NAME. To reach NAME from here:
      there: dlenv ssh-key path NAME        the file to copy
      here:  dlenv ssh-key import NAME FILE checked against EC2, stored 0600
    """


@ssh_key.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), metavar="PRIVATE_KEY_FILE")
@click.option("--force", is_flag=True, help="Replace a different key this machine holds for NAME.")
@aws_options
@click.pass_obj
def import_key(app: App, /, name: str, file: Path, force: bool, **aws_flags: Any) -> None:
    """Use PRIVATE_KEY_FILE (OpenSSH or PEM, no passphrase) as NAME's key on this machine.

    It must be the key of EC2 key pair dlenv-NAME (compared with the public key EC2 holds);
    nothing is written otherwise. Importing the same key again changes nothing.
    """
    from dlenv.cloud import keys
    from dlenv.cloud.session import from_settings
    from dlenv.ops.lifecycle import validate_name
    from dlenv.statefile import env_lock

    validate_name(name)
    aws = from_settings(app.settings(**aws_flags))
    # an `up` of NAME may be writing its key right now: take turns, never interleave
    with env_lock(name, say=app.terminal.info):
        result = keys.import_private_key(aws, name, file, force=force)
    if result.changed:
        app.terminal.success(f"{name}: key {result.fingerprint} stored in {result.path} (0600)")
    else:
        app.terminal.success(f"{name}: {result.path} already holds this key ({result.fingerprint})")
    app.terminal.info(f"next: dlenv ssh {name}   |   dlenv jupyter {name}")


@ssh_key.command("path")
@click.argument("name")
@click.pass_obj
def path(app: App, /, name: str) -> None:
    """Print where NAME's private key is on this machine (to copy it to another one)."""
    from dlenv.cloud.keys import private_key_path
    from dlenv.errors import NotFoundError
    from dlenv.ops.lifecycle import validate_name

    key = private_key_path(validate_name(name))
    if not key.is_file():
        raise NotFoundError(
            f"no private key for {name!r} on this machine (it would be {key})",
            f"on the machine that launched {name}, `dlenv ssh-key path {name}` shows it; "
            f"then `dlenv ssh-key import {name} FILE` here",
        )
    app.terminal.result(str(key))


@ssh_key.command("list")
@json_option
@aws_options
@click.pass_obj
def list_keys(app: App, /, as_json: bool, **aws_flags: Any) -> None:
    """dlenv keys on this machine and key pairs in EC2 (dlenv-*), and which side lacks one."""
    from dlenv.cloud import keys
    from dlenv.cloud.session import from_settings

    aws = from_settings(app.settings(**aws_flags))
    rows = keys.list_keys(aws)
    if as_json:
        app.terminal.json(
            {
                "region": aws.region_name,
                "keys": [
                    {
                        "name": r.env,
                        "key_pair": r.key_name,
                        "local": str(r.local) if r.local else None,
                        "ec2": r.remote is not None,
                        "ec2_fingerprint": r.remote.shown_fingerprint() if r.remote else None,
                        "state": r.state,
                        "fix": r.hint or None,
                    }
                    for r in rows
                ],
            }
        )
        return
    if not rows:
        app.terminal.info(f"no dlenv keys here or in {aws.region_name}")
        return
    app.terminal.table(
        ["NAME", "HERE", f"EC2 ({aws.region_name})", "STATE", "FIX"],
        [
            [
                r.env,
                "yes" if r.local else "-",
                "yes" if r.remote else "-",
                r.state,
                r.hint,
            ]
            for r in rows
        ],
        title="dlenv SSH keys",
    )
