"""The real `dlenv` CLI in a subprocess, as a user's shell or a script runs it.

One runner for the test packages that drive the CLI as a whole user (tests/ssh's isolated
HOME, motocli's moto-backed user): stdin is never a terminal (as in CI and scripts), so a
command that would ask must say how not to.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str, env: dict[str, str], timeout: float, cwd: Path | None = None) -> Result:
    """`python -m dlenv ARGS` with exactly `env`, output captured, stdin closed."""
    proc = subprocess.run(
        [sys.executable, "-m", "dlenv", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        cwd=cwd,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
