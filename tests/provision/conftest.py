"""Fixtures for the real-host tests: images, host containers, an isolated dlenv state dir."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def find_links_dir() -> Path | None:
    """The wheel directory pip's find-links names (where this machine keeps the CPU torch)."""
    value = os.environ.get("PIP_FIND_LINKS")
    if not value:
        proc = subprocess.run(
            ["pip", "config", "get", "global.find-links"], capture_output=True, text=True
        )
        value = proc.stdout.strip() if proc.returncode == 0 else ""
    for entry in value.split():
        path = Path(entry.removeprefix("file://"))
        if path.is_dir() and any(path.glob("torch-*.whl")):
            return path
    return None


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    path = find_links_dir()
    if path is None:
        pytest.skip("no CPU torch wheel in pip's find-links directory (set PIP_FIND_LINKS)")
    return path


@pytest.fixture(scope="session")
def host_images() -> None:
    from harness import ensure_images, require_engine

    require_engine()
    ensure_images()


@pytest.fixture(scope="session")
def isolated_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("dlenv-state")
    old = os.environ.get("DLENV_STATE_DIR")
    os.environ["DLENV_STATE_DIR"] = str(state)
    yield state
    if old is None:
        os.environ.pop("DLENV_STATE_DIR", None)
    else:
        os.environ["DLENV_STATE_DIR"] = old


@pytest.fixture(scope="session")
def host_pool(host_images: None, isolated_state: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """start(image) -> TestHost; every host started is removed at the end of the session."""
    from harness import HOST_IMAGE, start_host

    work = tmp_path_factory.mktemp("hosts")
    started = []

    def start(image: str = HOST_IMAGE, **kw):  # type: ignore[no-untyped-def]
        host = start_host(image, work=work, **kw)
        started.append(host)
        return host

    yield start
    if os.environ.get("DLENV_TEST_KEEP_HOSTS") != "1":
        for host in started:
            host.stop()
