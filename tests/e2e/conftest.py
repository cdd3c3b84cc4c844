"""Fixtures of the end-to-end tests: moto's server and the real CLI, and a fresh host container
standing in for one EC2 instance (tests/instancehost.py wires it to an environment name)."""

import pytest

from harness import hosts
from motocli import cli, moto_server  # noqa: F401  (fixtures)


@pytest.fixture
def host(tmp_path):  # type: ignore[no-untyped-def]
    """A fresh systemd + sshd host container, removed after the test."""
    hosts.require_engine()
    hosts.ensure_images()
    h = hosts.start_host(work=tmp_path)
    yield h
    h.stop()
