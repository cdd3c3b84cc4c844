"""`dlenv build` failures end in one actionable line (and the failing step's last lines)."""

from __future__ import annotations

import io

import pytest

from docker_support import run_dlenv

pytestmark = pytest.mark.docker

# both builders: BuildKit (docker buildx, the default when present) and the engine's classic
# builder through the Docker SDK (the fallback)
backends = pytest.mark.parametrize("builder", ["buildkit", "legacy"])


@backends
def test_unknown_base_image(docker_client, builder):
    proc = run_dlenv(
        "build",
        "--cpu",
        "--base-image",
        "dlenv-test/no-such-base:1",
        timeout=300,
        env={"DLENV_BUILDER": builder},
    )
    assert proc.returncode == 1, proc.stderr
    last = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(last) == 1
    assert (
        "base image dlenv-test/no-such-base:1 is not on this machine and could not be pulled"
        in last[0]
    )
    assert "hint:" in proc.stderr and "--base-image" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.fixture(scope="module")
def unsupported_base(docker_client, base_image):
    """The minbase claiming to be Fedora: the rendered steps' OS guard refuses it."""
    dockerfile = (
        f"FROM {base_image}\n"
        "RUN sed -e 's/^ID=.*/ID=fedora/' -e 's/^VERSION_ID=.*/VERSION_ID=\"40\"/' "
        "/usr/lib/os-release > /tmp/o && rm /etc/os-release && mv /tmp/o /etc/os-release\n"
    )
    _image, _ = docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag="dlenv-test/fake-fedora:1", rm=True
    )
    return "dlenv-test/fake-fedora:1"


@backends
def test_failing_step_shows_step_and_last_lines(unsupported_base, builder):
    proc = run_dlenv(
        "build",
        "--cpu",
        "--base-image",
        unsupported_base,
        timeout=600,
        env={"DLENV_BUILDER": builder},
    )
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert "--- last lines of step" in err
    assert "unsupported OS fedora-40" in err  # the failing command's own output
    error_lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1
    assert "build failed at step" in error_lines[0] and "exit code 1" in error_lines[0]
    assert "hint:" in err
    assert "Traceback" not in err
