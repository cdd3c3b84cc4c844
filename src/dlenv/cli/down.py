"""`dlenv down NAME...`: terminate and remove everything dlenv created for each."""

from __future__ import annotations

import click

from dlenv.cli.options import aws_options, yes_option


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
    app, names: tuple[str, ...], keep_key: bool, discard_changes: bool, yes: bool, **aws_flags
) -> None:
    """Terminate NAME (or several) and delete its security group, key pair and ssh entry.

    The root volume is deleted with the instance. First, the files in NAME's ~/work changed
    since the last `dlenv sync NAME --down` are listed: if there are any (or the environment is
    stopped or unreachable, so they cannot be listed), nothing is terminated unless
    --discard-changes; --yes alone never discards. `dlenv stop` keeps everything. With several
    names, each is tried and reported (removed, not found, or failed and why); the exit code is
    non-zero when any was not removed.
    """
    from dlenv import lifecycle
    from dlenv.errors import DlenvError, NotFoundError

    for name in names:  # every name is checked before anything is changed
        lifecycle.validate_name(name)
    settings = app.settings(**aws_flags)
    term = app.terminal
    if not discard_changes:
        _refuse_unsaved_work(names, settings, term)
    listed = ", ".join(names)
    if not app.terminal.confirm(f"Terminate {listed} and delete the disk(s)?", assume_yes=yes):
        raise DlenvError("cancelled", "nothing was changed")
    failed: list[tuple[str, DlenvError]] = []
    for name in names:
        try:
            result = lifecycle.down(name, settings, term, keep_key=keep_key)
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


def _refuse_unsaved_work(names: tuple[str, ...], settings, term) -> None:  # type: ignore[no-untyped-def]
    """Every name's ~/work checked before anything is terminated; one refusal stops them all."""
    from dlenv import sync
    from dlenv.errors import DlenvError

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
