"""Fixtures of the Ansible tests: host images, an isolated dlenv state dir, the wheelhouse."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers module sits beside this file (tests/ is on sys.path, but tests/ansible/ is not a
# package: its name would shadow the real `ansible`).
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def ansible_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """DLENV_STATE_DIR for the dlenv CLI runs beside the playbook (logs, known_hosts)."""
    state = tmp_path_factory.mktemp("dlenv-state")
    old = os.environ.get("DLENV_STATE_DIR")
    os.environ["DLENV_STATE_DIR"] = str(state)
    yield state
    if old is None:
        os.environ.pop("DLENV_STATE_DIR", None)
    else:
        os.environ["DLENV_STATE_DIR"] = old


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    from docker_support import find_wheelhouse

    return find_wheelhouse()
