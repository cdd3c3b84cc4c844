"""`dlenv provision --frameworks jax` on a real SSH host (systemd + sshd container), real CLI.

Only the steps a framework kernel needs (base packages, the uv env, JupyterLab, frameworks), on a
host from the provisioned image (tests/harness/provisioned.py: what is tested is the frameworks
step, not provisioning from scratch), so only frameworks and the Lab step (its kernel list gains
JAX's kernel) are pending; JAX's CPU build is the smaller of the two (TensorFlow's GPU/CPU choice and
its kernel are covered by the rendered-step tests). The apply already ran code in the new env's
python; here the "JAX" kernel runs code through a real JupyterLab on the host (reached over the
same SSH forward dlenv uses), the Lab lists it, and a rerun finds nothing to do.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.ports import free_port

pytestmark = [pytest.mark.docker, pytest.mark.hosts, pytest.mark.slow]
STEPS = "base-packages,python-env,jupyterlab,frameworks"
TOKEN = "f" * 48


def dlenv(host, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"DLENV_STATE_DIR": str(state), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    argv = ["provision", "--host", host.spec, "-i", str(host.key), "--python", "uv"]
    return subprocess.run(
        [sys.executable, "-m", "dlenv", *argv, "--only", STEPS, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
    )


def test_provision_frameworks_jax_kernel_runs_code_and_a_rerun_finds_nothing(
    provisioned_host, tmp_path
) -> None:
    import requests

    from dlenv.ssh.session import SshHost
    from jupyter_ws import shutdown, start_kernel

    host = provisioned_host
    state = tmp_path / "state"
    state.mkdir()
    (state / "known_hosts").write_text(host.known_hosts.read_text())

    start = time.monotonic()
    first = dlenv(host, state, "--frameworks", "jax")
    took = time.monotonic() - start
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    # the Lab step too: its kernel list now has the framework's kernel
    assert "applied 2 step(s): jupyterlab, frameworks" in first.stdout, first.stdout
    fw = "/opt/dlenv/frameworks/jax"
    # its own env, not the notebook env: jax is absent there, so CUDA libraries never meet
    assert host.exec(f"{fw}/bin/python -c 'import jax'", user="dlenv").returncode == 0
    assert host.exec("/opt/dlenv/env/bin/python -c 'import jax'").returncode != 0
    assert host.exec(f"stat -c %U {fw}").stdout.strip() == "dlenv"
    size = host.exec(f"du -sm {fw}").stdout.split()[0]
    print(f"\n[figures] provision --only {STEPS} --frameworks jax: {took:.1f}s; env {size} MB")

    # a real JupyterLab (the env's own config: only the stack's kernels) as the login user
    port = 8899
    host.exec(
        f"cd ~ && nohup /opt/dlenv/env/bin/jupyter-lab --no-browser --ip=127.0.0.1 --port={port} "
        f"--ServerApp.token={TOKEN} > /tmp/lab.log 2>&1 &",
        user="dlenv",
    )
    # listening before the tunnel opens: a forward whose first connection is refused (the Lab
    # still starting) dies with it, and every later request through it would hang
    deadline = time.monotonic() + 120
    while host.exec(f"curl -s -o /dev/null --max-time 5 http://127.0.0.1:{port}/api").returncode:
        assert time.monotonic() < deadline, host.exec("cat /tmp/lab.log").stdout[-2000:]
        time.sleep(1)
    with SshHost(host.target()) as h:
        h.connect()  # first, so the port picked next cannot become this connection's own
        local_port = free_port()
        with h.forward_local(local_port, port):
            base = f"http://127.0.0.1:{local_port}"
            auth = {"Authorization": f"token {TOKEN}"}
            for _ in range(60):
                try:
                    specs = requests.get(f"{base}/api/kernelspecs", headers=auth, timeout=5)
                    if specs.status_code == 200:
                        break
                except requests.RequestException:
                    pass
                time.sleep(1)
            else:
                raise AssertionError(host.exec("cat /tmp/lab.log").stdout[-2000:])
            kernels = specs.json()["kernelspecs"]
            assert sorted(kernels) == ["dlenv", "dlenv-jax"], sorted(kernels)
            assert kernels["dlenv-jax"]["spec"]["display_name"] == "JAX"
            kernel = start_kernel(base, TOKEN, "dlenv-jax")
            try:
                out = kernel.execute(
                    "import sys, jax, jax.numpy as jnp\n"
                    "print(sys.prefix, jax.__version__, float(jnp.ones(2).sum()), "
                    "jax.devices()[0].platform)",
                    timeout=180,
                )
            finally:
                shutdown(kernel)
    text = "".join(o.get("text", "") for o in out).split()
    assert text == [fw, "0.10.2", "2.0", "cpu"], text

    again = dlenv(host, state, "--frameworks", "jax")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do (every step already done)" in again.stdout, again.stdout
