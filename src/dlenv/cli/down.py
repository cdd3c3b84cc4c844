"""`dlenv down NAME...`: terminate and remove everything dlenv created for each."""

from __future__ import annotations

import click

from dlenv.cli.options import aws_options, yes_option


@click.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--keep-key", is_flag=True, help="Keep the EC2 key pair and the local private key.")
@yes_option
@aws_options
@click.pass_obj
def down(app, names: tuple[str, ...], keep_key: bool, yes: bool, **aws_flags) -> None:
    """Terminate NAME (or several) and delete its security group, key pair and ssh entry.

    The root volume is deleted with the instance: copy out what you need first. With several
    names, each is tried and reported (removed, not found, or failed and why); the exit code is
    non-zero when any was not removed.
    """
    from dlenv import lifecycle
    from dlenv.errors import DlenvError, NotFoundError

    for name in names:  # every name is checked before anything is changed
        lifecycle.validate_name(name)
    listed = ", ".join(names)
    if not app.terminal.confirm(f"Terminate {listed} and delete the disk(s)?", assume_yes=yes):
        raise DlenvError("cancelled", "nothing was changed")
    settings = app.settings(**aws_flags)
    term = app.terminal
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
