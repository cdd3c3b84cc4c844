"""`DockerExecHost`: a running container reached with `docker exec` (image builds, tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dlenv.errors import DockerError
from dlenv.remote.base import CommandResult, LineSink, sudo_wrap
from dlenv.remote.local import run_process


class DockerExecHost:
    def __init__(
        self, container: str, *, user: str | None = None, label: str | None = None
    ) -> None:
        self.container = container
        self.user = user
        self.label = label or container

    def _exec(self, command: str, *, interactive: bool) -> list[str]:
        argv = ["docker", "exec"]
        if interactive:
            argv.append("-i")
        if self.user:
            argv += ["-u", self.user]
        return [*argv, self.container, "bash", "-c", command]

    def run(
        self,
        command: str,
        *,
        stdin: str | None = None,
        on_line: LineSink | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        return run_process(
            self._exec(command, interactive=stdin is not None),
            command,
            stdin=stdin,
            on_line=on_line,
            timeout=timeout,
        )

    def sudo(
        self,
        command: str,
        *,
        stdin: str | None = None,
        on_line: LineSink | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        wrapped = command if self.user in (None, "root", "0") else sudo_wrap(command)
        return self.run(wrapped, stdin=stdin, on_line=on_line, timeout=timeout)

    def put(self, local: Path, remote: str) -> None:
        self._docker("cp", str(local), f"{self.container}:{remote}")

    def get(self, remote: str, local: Path) -> None:
        self._docker("cp", f"{self.container}:{remote}", str(local))

    def reconnect(self, timeout: float = 600) -> None:
        return None

    def close(self) -> None:
        return None

    def _docker(self, *args: str) -> None:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise DockerError(f"docker {args[0]} failed: {proc.stderr.strip()}")
