"""`dlenv sync NAME [LOCAL_DIR] --up | --down`: your files to and from the environment's ~/work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, host_options, yes_option

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.command()
@click.argument("name", required=False)
@click.argument("local_dir", required=False, metavar="[LOCAL_DIR]")
@click.option("--up", "up_", is_flag=True, help="Upload LOCAL_DIR into ~/work.")
@click.option("--down", "down_", is_flag=True, help="Bring ~/work back into LOCAL_DIR.")
@click.option(
    "--delete",
    is_flag=True,
    help="Also delete what the other side no longer has (listed and asked first).",
)
@host_options
@yes_option
@aws_options
@click.pass_obj
def sync(
    app: App,
    /,
    name: str | None,
    local_dir: str | None,
    up_: bool,
    down_: bool,
    delete: bool,
    host: str | None,
    identity: str | None,
    trust_new_host_key: bool,
    yes: bool,
    **aws_flags: Any,
) -> None:
    """Copy LOCAL_DIR (default: the current folder) to or from the notebook's ~/work with rsync.

    \b
    dlenv sync mybox --up              this folder -> mybox:~/work
    dlenv sync mybox results --down    mybox:~/work -> ./results (marks the work as saved)
    dlenv sync --host ubuntu@10.1.2.3 -i KEY --up

    .gitignore and .dlenvignore rules are honoured; a file that is newer on the receiving side
    is never overwritten; nothing is deleted unless --delete (which lists what would go first).
    `dlenv down` refuses while files in ~/work changed since the last `sync --down`.
    """
    from dlenv.errors import UsageError
    from dlenv.ops import sync as syncing

    if host and name:  # `dlenv sync --host u@h DIR --up`: the folder lands in NAME
        if local_dir is not None:
            raise UsageError(
                "give an environment NAME or --host USER@HOST, not both",
                "e.g. `dlenv sync --host ubuntu@10.0.0.5 -i key ./project --up`",
            )
        name, local_dir = None, name
    if bool(name) == bool(host):
        raise UsageError(
            "give an environment NAME or --host USER@HOST (one of them)",
            "e.g. `dlenv sync mybox --up` or `dlenv sync --host ubuntu@10.0.0.5 -i key --up`",
        )
    direction = "up" if up_ and not down_ else "down" if down_ and not up_ else None
    if direction is None:
        raise UsageError(
            "say which one way: --up (this machine -> ~/work) or --down (~/work -> this machine)",
            f"e.g. `dlenv sync {name or '--host ' + str(host)} --down`",
        )
    term = app.terminal
    settings = app.settings(**aws_flags)
    syncing.local_rsync()  # one line naming how to install it, before any connection
    if host:
        remote = syncing.host_remote(host, identity, settings, term, trust_new=trust_new_host_key)
    else:
        assert name is not None  # exactly one of NAME and --host: checked above
        from dlenv.ops import lifecycle

        lifecycle.validate_name(name)
        from dlenv.ops.nodes import cluster_member_names

        members = cluster_member_names(name, settings)  # NAME is a cluster: every node, in turn
        if members:
            if direction != "up":
                raise UsageError(
                    f"{name} is a cluster: bring files down from one of its nodes",
                    f"e.g. `dlenv sync {members[0]} --down`",
                )
            for member in members:
                remote = syncing.environment_remote(member, settings, term)
                syncing.mark_work(member, settings)
                done = syncing.sync(remote, local_dir or ".", "up", term, delete=delete, yes=yes)
                term.success(
                    f"synced up: {done.local} -> {member}:{done.remote} in {done.seconds:.1f}s"
                )
            return
        remote = syncing.environment_remote(name, settings, term)
        if direction == "up":
            syncing.mark_work(name, settings)  # from now on `down` checks ~/work first
    result = syncing.sync(remote, local_dir or ".", direction, term, delete=delete, yes=yes)
    gone = f", {len(result.deleted)} deleted" if result.deleted else ""
    term.success(
        f"synced {direction}: "
        + (
            f"{result.local} -> {result.remote}"
            if direction == "up"
            else f"{result.remote} -> {result.local}"
        )
        + f" in {result.seconds:.1f}s{gone}"
    )
    if direction == "down" and result.marker:
        term.note(
            f"marked as saved: `dlenv down {name}` will only stop for files changed after this"
            if name
            else "marked as saved on the host"
        )
