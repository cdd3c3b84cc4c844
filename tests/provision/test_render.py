"""`render_script`: one valid bash script per profile/manager, same bodies as the runner's steps."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from dlenv.errors import UsageError
from dlenv.provision.manifest import load_stack
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.render import render_script, write_uploads
from dlenv.provision.steps import STEP_NAMES, build_steps


@pytest.mark.parametrize("profile", ["vm", "container"])
@pytest.mark.parametrize("python", ["conda", "uv"])
@pytest.mark.parametrize("cpu", [False, True])
def test_script_is_valid_bash(profile: str, python: str, cpu: bool, tmp_path: Path) -> None:
    script = render_script(load_stack(), ProvisionOptions(python=python, profile=profile, cpu=cpu))
    path = tmp_path / "p.sh"
    path.write_text(script)
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert load_stack().fingerprint in script


def test_container_profile_leaves_out_systemd_and_driver_steps() -> None:
    script = render_script(load_stack(), ProvisionOptions(python="uv", profile="container"))
    steps = [line.split()[3] for line in script.splitlines() if line.startswith("# ---- step: ")]
    assert steps == [
        "base-packages",
        "python-env",
        "pytorch",
        "jupyterlab",
        "scientific",
        "smoke-test",
    ]
    assert "systemctl" not in script.split("# ---- step: base-packages")[1]


def test_vm_script_detects_the_gpu_at_run_time() -> None:
    script = render_script(load_stack(), ProvisionOptions(python="conda", profile="vm"))
    assert script.count('dlenv_log "no NVIDIA GPU: skipping driver/CUDA"') == 2
    assert 'case "$ID-$VERSION_ID" in' in script  # the driver step dispatches per OS at run time
    for step in STEP_NAMES:
        if step not in {"ca-bundle", "user-packages", "frameworks", "efa"}:  # only when asked for
            assert f"# ---- step: {step} " in script
    cpu = render_script(load_stack(), ProvisionOptions(python="conda", profile="vm", cpu=True))
    assert "# ---- step: nvidia-driver" not in cpu and "skipped (--cpu)" in cpu


def test_runner_and_script_share_the_step_bodies() -> None:
    stack, opts = load_stack(), ProvisionOptions(python="uv", profile="container")
    script = render_script(stack, opts)
    for step in build_steps(stack, opts).active():
        assert step.apply.strip() in script and step.check.strip() in script


def test_ca_bundle_and_wheelhouse_options(tmp_path: Path, pki) -> None:
    pem = pki.bundle(tmp_path / "corp.pem", "corp root", "corp issuing")
    opts = ProvisionOptions(python="uv", profile="container", ca_bundle=pem, wheelhouse=tmp_path)
    script = render_script(load_stack(), opts)
    # the bundle is a file the script reads (write_uploads), never text inside the script
    assert "# ---- step: ca-bundle" in script and "/opt/dlenv/uploads/dlenv-extra-ca.crt" in script
    assert "-----END CERTIFICATE-----" not in script
    for line in pem.read_text().splitlines():
        if line and not line.startswith(("#", "-----")):
            assert line not in script
    out = tmp_path / "out"
    assert write_uploads(load_stack(), opts, out) == ["dlenv-extra-ca.crt"]
    written = (out / "uploads" / "dlenv-extra-ca.crt").read_text()
    assert written == pem.read_text().strip() + "\n"
    assert hashlib.sha256(written.encode()).hexdigest() in script
    assert "export DLENV_WHEELHOUSE=/opt/dlenv/wheelhouse" in script
    assert "--system-certs" in script  # uv always trusts the system store


def test_conda_script_checks_the_installer_sha256() -> None:
    stack = load_stack()
    script = render_script(stack, ProvisionOptions(python="conda", profile="container"))
    mf = stack.conda_dist("miniforge")
    assert mf["url"] in script and f'echo "{mf["sha256"]}  $installer" | sha256sum -c' in script
    ana = render_script(
        stack, ProvisionOptions(python="conda", conda_dist="anaconda", profile="container")
    )
    assert stack.conda_dist("anaconda")["sha256"] in ana


def test_unknown_step_names_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown step jupyter"):
        ProvisionOptions(only=("jupyter",))
