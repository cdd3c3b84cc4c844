"""Read-only probes of the host: each runs one command or reads one file, with a timeout.

The probes record raw text (command output, file contents, environment variables) into a plain
JSON-able dict, the *observations*; parsing and judging happen elsewhere as pure functions. That
split lets the diagnosis tests replay observations recorded on real broken machines, and lets a
user attach `--json` output to a bug report that contains exactly what was seen.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from dlenv_smoke import nvsmi

COMMAND_TIMEOUT_S = 10.0
"""nvidia-smi can hang for minutes on a wedged GPU; no single probe may block the job."""

ENV_VARS = (
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "CUDA_VISIBLE_DEVICES",
    "LD_LIBRARY_PATH",
    "CUDA_HOME",
    "PYTORCH_CUDA_ALLOC_CONF",
)


def run(cmd: list[str], timeout: float = COMMAND_TIMEOUT_S) -> dict[str, Any]:
    """{'rc': exit status or None when the command does not exist, 'out': stdout+stderr}."""
    if shutil.which(cmd[0]) is None:
        return {"rc": None, "out": f"{cmd[0]}: command not found"}
    try:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
            errors="replace",
        )
    except subprocess.TimeoutExpired:
        return {"rc": -9, "out": f"{cmd[0]} did not answer within {timeout:.0f}s"}
    except OSError as exc:
        return {"rc": -1, "out": f"{cmd[0]}: {exc}"}
    return {"rc": proc.returncode, "out": proc.stdout}


def query_gpu() -> dict[str, Any]:
    """`nvidia-smi --query-gpu` CSV, retried without the fields older drivers reject."""
    result = run(nvsmi.query_gpu_command())
    if result["rc"] not in (0, None) and "not a valid field" in result["out"]:
        result = run(nvsmi.query_gpu_command(nvsmi.CORE_FIELDS))
    return result


def kernel_log() -> str | None:
    """The kernel ring buffer (for NVRM Xid lines), or None when not readable (containers)."""
    result = run(["dmesg"], timeout=5.0)
    if result["rc"] != 0:
        return None
    return "\n".join(ln for ln in result["out"].splitlines() if "NVRM" in ln)


def nvidia_pci_devices(root: Path = Path("/sys/bus/pci/devices")) -> int | None:
    """NVIDIA display/3D controllers on the PCI bus (vendor 0x10de, class 0x03xxxx).

    Visible even when the driver is not loaded, which separates "no GPU" from "no driver".
    """
    if not root.is_dir():
        return None
    count = 0
    for dev in root.iterdir():
        try:
            vendor = (dev / "vendor").read_text().strip()
            klass = (dev / "class").read_text().strip()
        except OSError:
            continue
        if vendor == "0x10de" and klass.startswith("0x03"):
            count += 1
    return count


def in_container() -> bool:
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    try:
        cgroup = Path("/proc/1/cgroup").read_text()
    except OSError:
        return False
    return any(word in cgroup for word in ("docker", "containerd", "kubepods", "libpod"))


def shm_bytes() -> int | None:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None
    return st.f_frsize * st.f_blocks


def collect_host(*, want_gpu: bool = True) -> dict[str, Any]:
    """Everything about the host that needs no torch. `want_gpu=False` skips the GPU probes."""
    dev = Path("/dev")
    obs: dict[str, Any] = {
        "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
        "in_container": in_container(),
        "shm_bytes": shm_bytes(),
        "cpu_count": os.cpu_count(),
        "dev_nvidia": sorted(p.name for p in dev.glob("nvidia*")) if dev.is_dir() else [],
        "pci_nvidia": nvidia_pci_devices(),
    }
    if want_gpu:
        obs["nvidia_smi"] = run(["nvidia-smi"])
        if obs["nvidia_smi"]["rc"] == 0:
            obs["query_gpu"] = query_gpu()
            obs["query_apps"] = run(nvsmi.query_apps_command())
            obs["kernel_log_before"] = kernel_log()
    return obs
