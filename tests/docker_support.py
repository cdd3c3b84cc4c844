"""Helpers of the image/compose tests (tests/docker/): the real CLI, ports, wheelhouse, CA.

No registry is reachable from this project's machines, so the base is a Debian 12 minbase made
with debootstrap (`scripts/make-base-image`), and torch comes from the CPU wheel in pip's
find-links folder. Images stay in the engine as a cache: a second run rebuilds nothing.

A module of its own (not tests/docker/conftest.py) because pytest's importlib mode cannot import
conftest modules by name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.ports import free_port

__all__ = ["free_port"]  # re-exported: the tests of tests/docker import it from here

REPO = Path(__file__).resolve().parents[1]
BASE_IMAGE = os.environ.get("DLENV_TEST_BASE_IMAGE", "dlenv-test/debian12-minbase")
CPU_IMAGE = "dlenv-test/notebook:cpu"


def dlenv_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "dlenv"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dlenv"]


def run_dlenv(
    *args: str, env: dict[str, str] | None = None, timeout: float = 1800, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess (plain output: stderr is not a terminal)."""
    full_env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", **(env or {})}
    proc = subprocess.run(
        [*dlenv_cmd(), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"dlenv {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def api_status(port: int, token: str | None, path: str = "/api/status") -> int:
    """The HTTP status of the Jupyter server on 127.0.0.1:`port` for `path` with `token` (none:
    no Authorization header); 0 when nothing answers."""
    import requests

    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        return requests.get(
            f"http://127.0.0.1:{port}{path}", headers=headers, timeout=5
        ).status_code
    except requests.ConnectionError:
        return 0


def local_up(
    image: str, port: int, env: dict[str, str], device: str = "cpu"
) -> subprocess.CompletedProcess[str]:
    """`dlenv local up --DEVICE --image IMAGE --port PORT` (the container and volumes that
    `env`, an `isolated_local`, names); the caller judges the outcome."""
    return run_dlenv(
        "local", "up", f"--{device}", "--image", image, "--port", str(port), env=env, timeout=300
    )


def find_wheelhouse() -> Path:
    """pip's find-links folder holding the CPU torch wheel (never download a CUDA torch here)."""
    candidates = [os.environ.get("DLENV_TEST_WHEELHOUSE"), os.environ.get("PIP_FIND_LINKS")]
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.find-links"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        candidates.append(out)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for cand in candidates:
        for part in (cand or "").split():
            path = Path(part.removeprefix("file://"))
            if path.is_dir() and any(path.glob("torch-*+cpu-cp311-*.whl")):
                return path
    pytest.fail(
        "no CPU torch wheel (torch-*+cpu-cp311-*.whl) in pip's find-links: set "
        "DLENV_TEST_WHEELHOUSE to a folder holding one (the image tests never fetch the "
        "multi-GB CUDA torch)"
    )


def extra_ca_bundle(tmp: Path) -> Path | None:
    """The CAs this machine trusts beyond the standard set (a TLS-re-signing proxy's), if any."""
    local = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    if not local:
        return None
    bundle = tmp / "extra-ca.pem"
    bundle.write_text("".join(p.read_text().strip() + "\n" for p in local))
    return bundle


def build_args(base: str, inputs: dict[str, str]) -> list[str]:
    args = ["--base-image", base, "--wheelhouse", inputs["wheelhouse"]]
    if "ca_bundle" in inputs:
        args += ["--ca-bundle", inputs["ca_bundle"]]
    return args


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
