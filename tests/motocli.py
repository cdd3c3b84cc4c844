"""The real `dlenv` CLI in a subprocess against moto's server (AWS_ENDPOINT_URL).

Shared by tests/cli and tests/e2e: a ThreadedMotoServer in the test process (so moto's
in-process backends can be seeded with what moto lacks) and a runner for the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from awsfake import FAKE_ENV, seed_ubuntu


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    old = {k: os.environ.get(k) for k in FAKE_ENV}
    os.environ.update(FAKE_ENV)
    seed_ubuntu("us-east-1", endpoint_url=url)
    yield url
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cli:
    env: dict[str, str]
    home: Path
    endpoint: str

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: int = 120) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "dlenv", *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(moto_server, tmp_path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DLENV_"))}
    env.update(FAKE_ENV)
    env.update(
        {
            "AWS_ENDPOINT_URL": moto_server,
            "HOME": str(tmp_path / "home"),
            "DLENV_STATE_DIR": str(tmp_path / "Application Support" / "dlenv"),
            "DLENV_CONFIG_DIR": str(tmp_path / "config"),
            "DLENV_ALLOW_CIDR": "203.0.113.9/32",
            "COLUMNS": "200",
        }
    )
    (tmp_path / "home").mkdir()
    return Cli(env, tmp_path / "home", moto_server)
