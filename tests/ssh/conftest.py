"""Fixtures for the SSH layer's real-component tests: a HOME whose dlenv state dir has a space
(macOS's `~/Library/Application Support/dlenv`), the dlenv CLI in a subprocess, host containers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness  # noqa: F401  (its cache dir is resolved from the real HOME, before tests move it)
from harness.cli import Result, run_cli

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Home:
    """An isolated user: HOME, its ~/.ssh, and dlenv's state dir (macOS's, with a space)."""

    root: Path
    state: Path

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DLENV_", "AWS_", "SSH_AUTH_SOCK"))
        }
        env.update(
            HOME=str(self.root),
            DLENV_STATE_DIR=str(self.state),
            DLENV_CONFIG_DIR=str(self.root / ".config" / "dlenv"),
            DLENV_USER_SSH_CONFIG=str(self.root / ".ssh" / "config"),
            PYTHONPATH=str(REPO / "src"),
            NO_COLOR="1",
        )
        return env

    def dlenv(self, *args: str, timeout: float = 300, cwd: Path | None = None) -> Result:
        """The real CLI in a subprocess, stdin not a terminal (as in CI and scripts)."""
        return run_cli(*args, env=self.env, timeout=timeout, cwd=cwd or self.root)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    root = tmp_path / "home"
    state = root / "Library" / "Application Support" / "dlenv"
    state.mkdir(parents=True, mode=0o700)
    (root / ".ssh").mkdir(mode=0o700)
    h = Home(root, state)
    for key, value in h.env.items():
        if key.startswith("DLENV_") or key == "HOME":
            monkeypatch.setenv(key, value)
    return h


# host_images, host: tests/conftest.py
