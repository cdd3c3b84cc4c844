"""Fixtures for the image/compose tests: a real Docker engine, a local base image, a CPU image.

This folder must never get an `__init__.py`: with `pythonpath = ["tests"]` it would shadow the
`docker` SDK package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from docker_support import (
    BASE_IMAGE,
    CPU_IMAGE,
    REPO,
    build_args,
    extra_ca_bundle,
    find_wheelhouse,
    run_dlenv,
)
from harness.locks import file_lock


@pytest.fixture(scope="session")
def docker_client():
    import docker

    if os.environ.get("DLENV_TEST_NO_DOCKER") == "1":
        pytest.skip("DLENV_TEST_NO_DOCKER=1")
    try:
        client = docker.from_env(timeout=900)
        client.ping()
    except Exception as exc:
        pytest.fail(f"no Docker engine ({exc}); scripts/test starts one (scripts/ensure-docker)")
    return client


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    with file_lock("minbase-image"):  # each xdist worker asks; the first one builds
        subprocess.run(
            [str(REPO / "scripts" / "make-base-image"), BASE_IMAGE], check=True, timeout=900
        )
    return BASE_IMAGE


@pytest.fixture(scope="session")
def build_inputs(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("build-inputs")
    inputs = {"wheelhouse": str(find_wheelhouse())}
    ca = extra_ca_bundle(tmp)
    if ca is not None:
        inputs["ca_bundle"] = str(ca)
    return inputs


@pytest.fixture(scope="session")
def cpu_build(docker_client, base_image, build_inputs) -> subprocess.CompletedProcess[str]:
    """`dlenv build --cpu` through the real CLI (cached layers make repeats take seconds)."""
    with file_lock("cpu-image"):  # each xdist worker asks; the first one builds
        return run_dlenv(
            "build", "--cpu", "--tag", CPU_IMAGE, *build_args(base_image, build_inputs), check=True
        )


@pytest.fixture(scope="session")
def cpu_image(cpu_build) -> str:
    return CPU_IMAGE


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def compose_cmd() -> list[str]:
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is missing (scripts/ensure-docker installs it)")
    return ["docker", "compose", "-f", str(REPO / "docker" / "compose.yaml")]


@pytest.fixture
def isolated_local(unique) -> Iterator[dict[str, str]]:
    """Env for `dlenv local` that never touches a real dlenv-notebook container or volume."""
    import docker

    env = {
        "DLENV_LOCAL_CONTAINER": f"dlenv-test-nb-{unique}",
        "DLENV_WORK_VOLUME": f"dlenv-test-work-{unique}",
    }
    yield env
    client = docker.from_env()
    for name in (env["DLENV_LOCAL_CONTAINER"],):
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
    # the packages volume `dlenv local` names after a custom work volume (notebook.py)
    for volume in (env["DLENV_WORK_VOLUME"], f"{env['DLENV_WORK_VOLUME']}-packages"):
        with contextlib.suppress(docker.errors.NotFound):
            client.volumes.get(volume).remove(force=True)
