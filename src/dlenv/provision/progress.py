"""The compact live view of a provisioning run: one row per host (step, elapsed, last line).

On a TTY it is a rich Live table refreshed a few times a second; otherwise (pipes, CI, tests)
it prints one stable plain line per event, so output can be asserted on and logged.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

    from dlenv.terminal import Terminal


@dataclass
class _Row:
    step: str = "connecting"
    started: float = field(default_factory=time.monotonic)
    last: str = ""
    state: str = "running"


class ProgressView:
    def __init__(self, terminal: Terminal, labels: list[str], *, plan_only: bool = False) -> None:
        self.terminal = terminal
        self.rows = {label: _Row() for label in labels}
        self.plan_only = plan_only
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __enter__(self) -> ProgressView:
        if self.terminal.interactive:
            from rich.live import Live

            live = Live(
                self._table(),
                console=self.terminal.err,
                refresh_per_second=4,
                transient=False,
                get_renderable=self._table,
            )
            live.__enter__()
            self._live = live
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def _table(self) -> Table:
        from rich.table import Table

        table = Table(show_header=True, header_style="bold", box=None)
        for col in ("host", "step", "elapsed", "last output"):
            table.add_column(col, overflow="ellipsis", no_wrap=True)
        now = time.monotonic()
        for label, row in self.rows.items():
            style = {"failed": "red", "finished": "green"}.get(row.state, "")
            table.add_row(
                label, row.step, f"{now - row.started:5.1f}s", row.last[-80:], style=style
            )
        return table

    def _say(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            self.terminal.info(text)

    def event(self, label: str, event: str, step: str, text: str) -> None:
        with self._lock:
            row = self.rows.setdefault(label, _Row())
            if event == "start":
                row.step, row.started, row.last = step, time.monotonic(), text
                if self._live is None:
                    self._say(f"[{label}] {step}: applying{' ' + text if text else ''}")
            elif event == "line":
                row.last = text.strip()
            elif event == "done":
                self._say(f"[{label}] ✓ {step}{' (' + text + ')' if text else ''}")
            elif event == "note":
                self._say(f"[{label}] {text}")
            elif event == "reboot":
                row.last = text
                self._say(f"[{label}] {step}: {text}")
            elif event == "plan":
                pending = [kv.split("=")[0] for kv in text.split() if kv.endswith("=pending")]
                row.step = "planned"
                self._say(
                    f"[{label}] plan: {len(pending)} pending"
                    f"{': ' + ', '.join(pending) if pending else ' (nothing to do)'}"
                )
            elif event == "fail":
                row.state, row.last = "failed", text
                self._say(f"[{label}] ✗ {step or 'failed'}: {text}")
            elif event == "finished":
                row.state, row.step = "finished", "finished"
