"""`dlenv provision` through the real CLI entry point (subprocesses: what a user runs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def dlenv(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dlenv", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def state(tmp_path: Path) -> dict[str, str]:
    return {"DLENV_STATE_DIR": str(tmp_path / "state"), "DLENV_CONFIG_DIR": str(tmp_path / "cfg")}


def test_help_does_not_import_ssh_libraries() -> None:
    code = (
        "import sys; from dlenv.cli import cli; from click.testing import CliRunner; "
        "r = CliRunner().invoke(cli, ['provision', '--help']); assert r.exit_code == 0, r.output; "
        "assert '--wheelhouse' in r.output and '--trust-new-host-key' in r.output; "
        "bad = [m for m in ('paramiko', 'fabric', 'boto3', 'docker') if m in sys.modules]; "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_needs_a_name_or_host(state: dict[str, str]) -> None:
    proc = dlenv("provision", env=state)
    assert proc.returncode == 2 and "give an environment NAME or --host" in proc.stderr


def test_unknown_step_is_a_usage_error(state: dict[str, str], tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text("x")
    proc = dlenv(
        "provision", "--host", "u@127.0.0.1:1", "-i", str(key), "--only", "jupyter", env=state
    )
    assert proc.returncode == 2 and "unknown step jupyter" in proc.stderr


def test_unreachable_host_is_one_clear_line(state: dict[str, str], tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    proc = dlenv("provision", "--host", f"ubuntu@127.0.0.1:{port}", "-i", str(key), env=state)
    assert proc.returncode == 1
    assert f"cannot reach 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
