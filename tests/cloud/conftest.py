from __future__ import annotations

import pytest

from awsfake import FAKE_ENV, seed_ubuntu


@pytest.fixture
def state(tmp_path, monkeypatch):
    """Isolated dlenv state, HOME and config for one test."""
    monkeypatch.setenv("DLENV_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DLENV_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for var in ("AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def aws(state, monkeypatch):
    """moto's in-process AWS with Ubuntu images seeded; yields dlenv's Aws session."""
    from moto import mock_aws

    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        ids = seed_ubuntu("us-east-1")
        from dlenv.cloud.session import Aws

        session = Aws(region="us-east-1")
        session.ubuntu_ids = ids  # type: ignore[attr-defined]
        yield session


@pytest.fixture
def settings(aws):
    from dlenv import config

    return config.load({"region": "us-east-1", "allow_cidr": "198.51.100.7/32"})


@pytest.fixture
def terminal():
    from dlenv.terminal import Terminal

    return Terminal(interactive=False)
