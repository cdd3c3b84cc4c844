"""Fixtures for the smoke-test tests."""

from __future__ import annotations

from typing import Any

import pytest

from smoke.smokejob import run_job


@pytest.fixture(scope="session")
def cpu_report() -> tuple[int, dict[str, Any], str]:
    """One real `--device cpu --quick --json` run, shared by the tests that only read it."""
    code, report, _out, err = run_job("--device", "cpu", "--quick", "--json")
    assert report is not None, err
    return code, report, err
