"""The `Host` protocol and the result type every variant returns."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

LineSink = Callable[[str], None]
"""Receives each line of a command's combined output as it arrives (logs, live progress)."""


LOST: Final = -1
"""exit_code of a command whose connection dropped before it finished (no real exit is < 0)."""
TIMED_OUT: Final = 124
"""exit_code of a command stopped after its timeout (as timeout(1) reports it)."""


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    output: str
    """stdout and stderr interleaved as they arrived (what a person would have seen)."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def lost(self) -> bool:
        """The connection dropped before the command finished: its outcome is unknown."""
        return self.exit_code == LOST

    @property
    def timed_out(self) -> bool:
        return self.exit_code == TIMED_OUT

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output.rstrip("\n").splitlines()[-lines:])


@runtime_checkable
class Host(Protocol):
    label: str

    def run(
        self,
        command: str,
        *,
        stdin: str | None = None,
        on_line: LineSink | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run a shell command as the login user; never raises for a non-zero exit."""

    def sudo(
        self,
        command: str,
        *,
        stdin: str | None = None,
        on_line: LineSink | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run a shell command as root (non-interactive sudo; plain run when already root)."""

    def put(self, local: Path, remote: str) -> None:
        """Copy a local file to a path the login user can write."""

    def get(self, remote: str, local: Path) -> None: ...

    def reconnect(self, timeout: float = 600) -> None:
        """Drop and re-establish the session (after a reboot); raises SshError on timeout."""

    def close(self) -> None: ...


def iter_lines(buffer: str) -> Iterator[tuple[str, str]]:
    """Split complete lines off `buffer`: yields (line, rest) pairs, last rest = unfinished part."""
    while "\n" in buffer:
        line, buffer = buffer.split("\n", 1)
        yield line.rstrip("\r"), buffer


def sudo_wrap(command: str) -> str:
    """`sudo -n` (never prompt: a prompt would hang a non-interactive run) around bash -c."""
    from dlenv.ssh.command import join

    return join(["sudo", "-n", "-H", "bash", "-c", command])
