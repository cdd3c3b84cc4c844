"""All user-facing output goes through one Terminal.

Interactive terminals get colour, spinners and tables from rich; pipes and tests get plain,
stable text (no ANSI codes, no spinners), so the CLI's output can be asserted on and logged.
Errors and progress go to stderr, results (tables, JSON) to stdout.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any


class Terminal:
    def __init__(self, *, interactive: bool | None = None, debug: bool = False) -> None:
        if interactive is None:
            interactive = sys.stderr.isatty()
        self.interactive = interactive
        self.debug = debug

    # rich is imported on first output, not at import time: `dlenv --help` never needs it.
    @cached_property
    def out(self) -> Any:
        from rich.console import Console

        return Console(highlight=False, soft_wrap=True)

    @cached_property
    def err(self) -> Any:
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True)

    # -- messages -------------------------------------------------------------------------
    def info(self, text: str) -> None:
        self.err.print(text, markup=False)

    def note(self, text: str) -> None:
        self.err.print(f"[dim]{_esc(text)}[/dim]")

    def success(self, text: str) -> None:
        self.err.print(f"[green]{_esc(text)}[/green]")

    def warn(self, text: str) -> None:
        self.err.print(f"[yellow]warning:[/yellow] {_esc(text)}")

    def error(self, text: str, hint: str | None = None) -> None:
        self.err.print(f"[bold red]error:[/bold red] {_esc(text)}")
        if hint:
            self.err.print(f"[cyan]hint:[/cyan] {_esc(hint)}")

    def result(self, text: str) -> None:
        """A line that is the command's answer (stdout), e.g. a URL or an ID."""
        self.out.print(text, markup=False)

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()

    def table(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
    ) -> None:
        from rich.table import Table

        table = Table(title=title, show_lines=False, header_style="bold")
        for col in columns:
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        self.out.print(table)

    # -- progress -------------------------------------------------------------------------
    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """One phase of a long operation: a spinner on a TTY, `name ... done (1.2s)` otherwise.

        Each phase reports its own elapsed time, so a slow launch shows where time went.
        """
        start = time.monotonic()
        if self.interactive:
            with self.err.status(f"{name} ..."):
                yield
        else:
            self.err.print(f"{name} ...", markup=False)
            yield
        self.err.print(
            f"[green]✓[/green] {_esc(name)} [dim]({time.monotonic() - start:.1f}s)[/dim]"
        )

    def confirm(self, question: str, *, assume_yes: bool) -> bool:
        """Ask y/N; refuses to guess when nobody can answer (stdin not a TTY)."""
        if assume_yes:
            return True
        if not sys.stdin.isatty():
            from dlenv.errors import UsageError

            raise UsageError(
                f"{question} needs confirmation, but stdin is not a terminal",
                "pass --yes to confirm non-interactively",
            )
        answer = self.err.input(f"{_esc(question)} [y/N] ")
        return answer.strip().lower() in {"y", "yes"}


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
