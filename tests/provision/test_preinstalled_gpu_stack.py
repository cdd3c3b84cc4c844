"""A machine that already has the NVIDIA driver and CUDA (AWS's Deep Learning AMI, `--ami dlami`):
the driver and CUDA steps keep what is there instead of installing packages over it.

A host container stands in for such an image: recorded-format `nvidia-smi` (branch 580,
persistence off, as a fresh boot reports it) and `nvcc` (release 13.0 at the stack's CUDA home)
are installed as executables. No GPU is involved; what is tested is the steps' decisions.
"""

from __future__ import annotations

import pytest

from dlenv.provision import runner
from dlenv.provision.options import ProvisionOptions
from dlenv.terminal import Terminal

pytestmark = [pytest.mark.docker, pytest.mark.hosts]

GPU_STEPS = ("nvidia-driver", "cuda-toolkit")

NVIDIA_SMI = r"""#!/bin/bash
# Answers as nvidia-smi does on one T4 with driver VERSION; persistence as last set by -pm.
state=/var/lib/fake-nvidia/persistence
case "$*" in
  *name,driver_version,memory.total*) echo "Tesla T4, VERSION, 15360 MiB" ;;
  *driver_version*) echo "VERSION" ;;
  *persistence_mode*) cat "$state" 2>/dev/null || echo Disabled ;;
  "-pm 1") mkdir -p "${state%/*}"; echo Enabled > "$state"
           echo "Enabled persistence mode for GPU 00000000:00:1E.0." ;;
  "") echo "| NVIDIA-SMI VERSION    Driver Version: VERSION    CUDA Version: 13.0 |" ;;
  *) echo "nvidia-smi stand-in: unexpected arguments: $*" >&2; exit 2 ;;
esac
"""
NVCC = """#!/bin/bash
echo "nvcc: NVIDIA (R) Cuda compiler driver"
echo "Cuda compilation tools, release 13.0, V13.0.88"
"""


def _image_like(host, driver: str) -> None:
    script = (
        f"cat > /usr/local/bin/nvidia-smi <<'EOF'\n{NVIDIA_SMI.replace('VERSION', driver)}EOF\n"
        "mkdir -p /usr/local/cuda-13.0/bin\n"
        f"cat > /usr/local/cuda-13.0/bin/nvcc <<'EOF'\n{NVCC}EOF\n"
        "chmod 755 /usr/local/bin/nvidia-smi /usr/local/cuda-13.0/bin/nvcc"
    )
    host.exec(script, check=True)


def _provision(host, plan_only: bool = False):
    [res] = runner.provision(
        [host.target()],
        ProvisionOptions(python="uv", only=GPU_STEPS),
        Terminal(interactive=False),
        plan_only=plan_only,
    )
    return res


def test_a_working_driver_and_cuda_are_kept(host_pool) -> None:
    host = host_pool()
    _image_like(host, "580.95.05")
    plan = _provision(host, plan_only=True)
    assert plan.facts is not None and plan.facts.has_nvidia_gpu
    # the driver: persistence is off; CUDA: dlenv's PATH profile is missing
    assert [s.name for s in plan.plan if s.status == "pending"] == list(GPU_STEPS)
    res = _provision(host)
    assert res.ok, res.error
    assert res.applied == list(GPU_STEPS)
    log = res.log_path.read_text()
    assert "NVIDIA driver branch 580 is already installed and loaded: keeping it" in log
    assert "CUDA 13.0 is already installed at /usr/local/cuda-13.0: keeping it" in log
    # nothing was installed: no NVIDIA repository, no driver or toolkit package
    listed = host.exec("ls /etc/apt/sources.list.d; dpkg -l | grep -Ec 'nvidia|cuda' || true")
    assert "cuda" not in listed.stdout.split("\n")[0] and listed.stdout.strip().endswith("0")
    again = _provision(host, plan_only=True)
    assert {s.name: s.status for s in again.plan if s.name in GPU_STEPS} == dict.fromkeys(
        GPU_STEPS, "done"
    )
    # issue 17 item 5: the runfile driver has no nvidia-persistenced unit, so dlenv's boot-time
    # unit keeps persistence on; a reboot (persistence lost) leaves the step done, and the unit
    # turns persistence back on as the boot would.
    unit = host.exec("systemctl is-enabled dlenv-nvidia-persistence", check=True)
    assert unit.stdout.strip() == "enabled"
    host.exec("rm -f /var/lib/fake-nvidia/persistence", check=True)  # as after a reboot
    after_boot = _provision(host, plan_only=True)
    assert {s.name: s.status for s in after_boot.plan}["nvidia-driver"] == "done"
    host.exec("systemctl restart dlenv-nvidia-persistence", check=True)
    assert host.exec("cat /var/lib/fake-nvidia/persistence").stdout.strip() == "Enabled"


def test_another_branch_installed_outside_apt_is_not_overwritten(host_pool) -> None:
    host = host_pool()
    _image_like(host, "570.172.08")
    res = _provision(host)
    assert not res.ok and res.failed_step == "nvidia-driver"
    text = res.error.message
    assert "NVIDIA driver 570.172.08 was installed outside apt" in text
    assert "--skip nvidia-driver" in text
