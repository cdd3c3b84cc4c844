"""Helpers for the smoke-test tests: run the real job (`python -m dlenv_smoke`) in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
DATA = Path(__file__).resolve().parent / "data"
JOB_TIMEOUT_S = 240


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with src/ importable and no sabotage unless a test asks for it."""
    env = {k: v for k, v in os.environ.items() if k != "DLENV_SMOKE_SABOTAGE"}
    env["PYTHONPATH"] = str(SRC)
    env.update(extra or {})
    return env


def run_job(
    *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any] | None, str, str]:
    """(exit code, parsed JSON report or None, stdout, stderr) of `python -m dlenv_smoke`."""
    proc = subprocess.run(
        [sys.executable, "-m", "dlenv_smoke", *args],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
        check=False,
    )
    report = json.loads(proc.stdout) if "--json" in args and proc.stdout.strip() else None
    return proc.returncode, report, proc.stdout, proc.stderr


def load_case(folder: Path) -> dict[str, Any]:
    def resolve(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("@file:"):
            return (folder / value.removeprefix("@file:")).read_text()
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    return resolve(json.loads((folder / "observations.json").read_text()))
