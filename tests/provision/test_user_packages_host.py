"""`dlenv provision --requirements FILE` on a real SSH host (systemd + sshd container), real CLI.

Only the steps the user's packages need (base packages, the uv env, user-packages), on a host
from the provisioned image (tests/harness/provisioned.py: what is tested is the user-packages
step, not provisioning from scratch), so only user-packages is pending. One host: install,
re-run (nothing to do), change the file (just that step runs again), each through the real CLI
in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.hosts, pytest.mark.slow]
STEPS = "base-packages,python-env,user-packages"


def dlenv(host, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"DLENV_STATE_DIR": str(state), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    argv = ["provision", "--host", host.spec, "-i", str(host.key), "--python", "uv"]
    return subprocess.run(
        [sys.executable, "-m", "dlenv", *argv, "--only", STEPS, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def test_provision_installs_a_requirements_file_and_a_rerun_finds_nothing(
    provisioned_host, tmp_path
) -> None:
    host = provisioned_host
    state = tmp_path / "state"
    state.mkdir()
    (state / "known_hosts").write_text(host.known_hosts.read_text())
    req = tmp_path / "requirements.txt"
    req.write_text("# my project\nsix==1.17.0\n")

    start = time.monotonic()
    first = dlenv(host, state, "--requirements", str(req))
    took = time.monotonic() - start
    assert first.returncode == 0, first.stderr[-3000:]
    assert "applied 1 step(s): user-packages" in first.stdout, first.stdout
    env_python = "/opt/dlenv/env/bin/python"
    probe = host.exec(f"{env_python} -c 'import six; print(six.__version__)'", user="dlenv")
    assert probe.stdout.strip() == "1.17.0", probe.stderr
    # the file went as a file, pinned by its digest; the env records what it holds
    assert host.exec("cat /opt/dlenv/uploads/dlenv-user-requirements.txt").stdout == (
        "# from requirements.txt\n# my project\nsix==1.17.0\n"
    )
    assert host.exec("cat /opt/dlenv/env/.dlenv-user-packages").stdout.strip()
    print(f"\n[figures] provision --only {STEPS} --requirements (six): {took:.1f}s")

    again = dlenv(host, state, "--requirements", str(req))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do (every step already done)" in again.stdout

    req.write_text("six==1.17.0\nidna==3.10\n")  # a changed file: just that step again
    changed = dlenv(host, state, "--requirements", str(req), "--plan")
    assert changed.returncode == 0 and "1 step(s) pending" in changed.stdout, changed.stdout
    changed = dlenv(host, state, "--requirements", str(req))
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "applied 1 step(s): user-packages" in changed.stdout
    assert host.exec(f"{env_python} -c 'import idna, six'", user="dlenv").returncode == 0

    # a line that would replace a pin is refused before the host is contacted, in one line
    req.write_text("numpy==1.26.4\n")
    bad = dlenv(host, state, "--requirements", str(req))
    assert bad.returncode == 2 and "would replace the stack's numpy" in bad.stderr
    assert "Traceback" not in bad.stderr
