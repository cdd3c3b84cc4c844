"""The real `dlenv` CLI in a subprocess against moto's server (AWS_ENDPOINT_URL).

Shared by tests/cli and tests/e2e: a ThreadedMotoServer in the test process (so moto's
in-process backends can be seeded with what moto lacks) and a runner for the CLI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from awsfake import FAKE_ENV, seed_ubuntu, ubuntu_seeded
from harness.cli import Result, run_cli

SERVER: list[str] = []
"""The URL of this process's moto server once `moto_server` started it."""


def ensure_seeded() -> None:
    """Seed the server again where an in-process `mock_aws()` (tests/cloud's `aws` fixture, an
    inline one) wiped moto's backends since: which test module ran before in this xdist worker is
    not fixed, so no test may rely on the seed of the session's start."""
    if SERVER and not ubuntu_seeded("us-east-1"):
        seed_ubuntu("us-east-1", endpoint_url=SERVER[0])


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
    SERVER.append(url)
    yield url
    SERVER.clear()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@dataclass
class Cli:
    env: dict[str, str]
    home: Path
    endpoint: str

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: int = 120) -> Result:
        return run_cli(*args, env={**self.env, **(env or {})}, timeout=timeout)


def isolated_env(endpoint: str, root: Path) -> dict[str, str]:
    """The environment of a CLI talking to moto at `endpoint` as a user of its own: HOME, the
    state dir (macOS's, with a space) and the config dir under `root`, no AWS_/DLENV_ variable
    of the test process leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DLENV_"))}
    env.update(FAKE_ENV)
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "HOME": str(root / "home"),
            "DLENV_STATE_DIR": str(root / "Application Support" / "dlenv"),
            "DLENV_CONFIG_DIR": str(root / "config"),
            "DLENV_ALLOW_CIDR": "203.0.113.9/32",
            "COLUMNS": "200",
        }
    )
    return env


def make_cli(endpoint: str, root: Path) -> Cli:
    """A CLI runner with a HOME, state and config dir of its own under `root`, talking to moto."""
    ensure_seeded()
    (root / "home").mkdir()
    return Cli(isolated_env(endpoint, root), root / "home", endpoint)


@pytest.fixture
def cli(moto_server, tmp_path) -> Cli:
    return make_cli(moto_server, tmp_path)
