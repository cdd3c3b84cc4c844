"""`dlenv down NAME...`: terminate and remove everything dlenv created for each."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, yes_option

if TYPE_CHECKING:
    from dlenv.cli._app import App
    from dlenv.config import Settings
    from dlenv.terminal import Terminal


@click.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--keep-key", is_flag=True, help="Keep the EC2 key pair and the local private key.")
@click.option(
    "--discard-changes",
    is_flag=True,
    help="Terminate even when files in ~/work changed since the last `dlenv sync NAME --down` "
    "(or cannot be listed): they are lost.",
)
@yes_option
@aws_options
@click.pass_obj
def down(
    app: App,
    /,
    names: tuple[str, ...],
    keep_key: bool,
    discard_changes: bool,
    yes: bool,
    **aws_flags: Any,
) -> None:
    """Terminate NAME (or several) and delete its security group, key pair and ssh entry.

    The root volume is deleted with the instance. First, the files in NAME's ~/work changed
    since the last `dlenv sync NAME --down` are listed: if there are any (or the environment is
    stopped or unreachable, so they cannot be listed), nothing is terminated unless
    --discard-changes; --yes alone never discards. `dlenv stop` keeps everything. With several
    names, each is tried and reported (removed, not found, or failed and why); the exit code is
    non-zero when any was not removed. A cluster (`up NAME --nodes N`) goes whole: every node,
    its placement group and its security groups, also when a node is already gone.
    """
    from dlenv.cloud.session import from_settings
    from dlenv.errors import DlenvError, NotFoundError
    from dlenv.ops import down as ops_down
    from dlenv.ops import lifecycle

    for name in names:  # every name is checked before anything is changed
        lifecycle.validate_name(name)
    settings = app.settings(**aws_flags)
    term = app.terminal
    from dlenv.ops import cluster_up

    if not discard_changes:  # a cluster's work is on its nodes: each node's ~/work is checked
        _refuse_unsaved_work(cluster_up.node_names_for_check(names, settings), settings, term)
    listed = ", ".join(names)
    if not app.terminal.confirm(f"Terminate {listed} and delete the disk(s)?", assume_yes=yes):
        raise DlenvError("cancelled", "nothing was changed")
    failed: list[tuple[str, DlenvError]] = []
    for name in names:
        try:
            if cluster_up.is_cluster(from_settings(settings), name):
                _down_cluster(name, settings, term, keep_key)
                continue
            result = ops_down.down(name, settings, term, keep_key=keep_key)
        except DlenvError as exc:
            if len(names) == 1:
                raise
            kind = "not found" if isinstance(exc, NotFoundError) else "failed"
            term.warn(f"{name}: {kind}: {exc.one_line()}")
            failed.append((name, exc))
            continue
        removed = [
            x
            for x, ok in (
                ("instance " + ", ".join(result.instances), result.instances),
                ("security group", result.security_group),
                ("key pair", result.key_pair),
                ("private key", result.local_key),
                ("ssh config entry", result.ssh_entry),
            )
            if ok
        ]
        term.success(f"{name} removed: {', '.join(removed) or 'nothing was left'}")
    if failed:
        raise DlenvError(
            f"{len(failed)} of {len(names)} environments not removed: "
            + ", ".join(
                f"{n} ({'not found' if isinstance(e, NotFoundError) else 'failed'})"
                for n, e in failed
            ),
            "`dlenv status` lists your environments (check --region); "
            "re-run `dlenv down` for a failed one",
        )


def _down_cluster(name: str, settings: Settings, term: Terminal, keep_key: bool) -> None:
    """`down NAME` of a cluster: every node, its placement group and security groups."""
    from dlenv.ops import cluster_up

    result = cluster_up.down(name, settings, term, keep_key=keep_key)
    removed = [
        x
        for x, ok in (
            (f"{len(result.instances)} node(s) " + ", ".join(result.instances), result.instances),
            ("placement group", result.placement_group),
            (f"{len(result.security_groups)} security group(s)", result.security_groups),
            ("key pair", result.key_pair),
            (f"{result.local_keys} private key(s)", result.local_keys),
            (f"{result.ssh_entries} ssh config entries", result.ssh_entries),
        )
        if ok
    ]
    term.success(f"cluster {name} removed: {', '.join(removed) or 'nothing was left'}")


def _refuse_unsaved_work(names: tuple[str, ...], settings: Settings, term: Terminal) -> None:
    """Every name's ~/work checked before anything is terminated; one refusal stops them all."""
    from dlenv.errors import DlenvError
    from dlenv.ops import sync

    refused: list[tuple[str, DlenvError]] = []
    for name in names:
        try:
            sync.check_before_down(name, settings, term)
        except sync.UnsavedWorkError as exc:
            if len(names) == 1:
                raise
            term.warn(f"{name}: {exc.one_line()}")
            refused.append((name, exc))
    if refused:
        raise DlenvError(
            f"{len(refused)} of {len(names)} environments hold work not brought back: "
            + ", ".join(n for n, _ in refused)
            + "; nothing was terminated",
            "`dlenv sync NAME --down` for each, or add --discard-changes to lose it",
        )
