"""`LocalHost`: the machine dlenv runs on (used by `dlenv local` and tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from dlenv.remote.base import CommandResult, LineSink, sudo_wrap


class LocalHost:
    label = "local"

    def __init__(self, label: str = "local") -> None:
        self.label = label

    def run(
        self,
        command: str,
        *,
        stdin: str | None = None,
        on_line: LineSink | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        return run_process(
            ["bash", "-c", command], command, stdin=stdin, on_line=on_line, timeout=timeout
        )

    def sudo(
        self,
        command: str,
        *,
        stdin: str | None = None,
        on_line: LineSink | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        wrapped = command if os.geteuid() == 0 else sudo_wrap(command)
        return self.run(wrapped, stdin=stdin, on_line=on_line, timeout=timeout)

    def put(self, local: Path, remote: str) -> None:
        shutil.copyfile(local, remote)

    def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def reconnect(self, timeout: float = 600) -> None:
        return None

    def close(self) -> None:
        return None


def run_process(
    argv: list[str],
    shown: str,
    *,
    stdin: str | None,
    on_line: LineSink | None,
    timeout: float | None,
) -> CommandResult:
    """Run argv with merged output, feeding each line to `on_line` as it arrives."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if on_line:
            on_line(line.rstrip("\n"))
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = 124
    return CommandResult(shown, code, "".join(lines))
