"""Diagnosis rules: pure functions from recorded observations to plain-language findings.

Each rule reads the observations dict built by `probe`, `torchprobe` and the job (command
output text, torch exception messages, nvidia-smi readings before/during/after load, /dev/shm,
environment variables) and returns at most one `Finding`: one sentence saying what is wrong and
one saying what to do. Rules never run anything, so a folder of recorded cases tests them all.

Severities:
  error  the GPU cannot be used at all (the job falls back to CPU and says why)
  fail   the GPU was used but something broke (verdict fail)
  warn   it works, but slower or less safely than it should
  info   worth knowing, not a problem (e.g. a T4 sitting at its 70 W power cap)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from dlenv_smoke import nvsmi

SEVERITIES = ("error", "fail", "warn", "info")
SHM_MIN_BYTES = 512 * 1024 * 1024
"""Below this, DataLoader workers with real batches and NCCL run out of shared memory (Docker's
default is 64 MiB)."""


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


Rule = Callable[[dict[str, Any]], "Finding | None"]
RULES: list[Rule] = []


def rule(func: Rule) -> Rule:
    RULES.append(func)
    return func


def diagnose(obs: dict[str, Any]) -> list[Finding]:
    """All findings for the observations, most severe first."""
    findings = [f for f in (r(obs) for r in RULES) if f is not None]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


# -- helpers over observations ----------------------------------------------------------------


def _smi(obs: dict[str, Any]) -> dict[str, Any]:
    return obs.get("nvidia_smi") or {"rc": None, "out": ""}


def _torch(obs: dict[str, Any]) -> dict[str, Any]:
    return obs.get("torch") or {}


def _run(obs: dict[str, Any]) -> dict[str, Any]:
    return obs.get("run") or {}


def _errors_text(obs: dict[str, Any]) -> str:
    """Every error message seen: nvidia-smi, torch init and warnings, and the job's phases."""
    torch = _torch(obs)
    parts = [
        _smi(obs).get("out") or "",
        torch.get("init_error") or "",
        torch.get("cudnn_error") or "",
        *torch.get("warnings", []),
    ]
    parts += [e.get("text", "") for e in _run(obs).get("errors", [])]
    return "\n".join(parts)


def _first_error(obs: dict[str, Any], pattern: str) -> dict[str, Any] | None:
    for err in _run(obs).get("errors", []):
        if re.search(pattern, err.get("text", ""), flags=re.I):
            found: dict[str, Any] = err
            return found
    return None


def _has_gpu_hardware(obs: dict[str, Any]) -> bool:
    return _smi(obs).get("rc") == 0 or bool(obs.get("dev_nvidia")) or bool(obs.get("pci_nvidia"))


def _gpu_rows(obs: dict[str, Any], key: str = "query_gpu") -> list[dict[str, Any]]:
    result = obs.get(key) or {}
    return nvsmi.parse_csv(result.get("out") if result.get("rc") == 0 else None)


def _load_rows(obs: dict[str, Any]) -> list[dict[str, Any]]:
    """nvidia-smi rows sampled while the job had the GPU under load."""
    rows: list[dict[str, Any]] = []
    for text in _run(obs).get("query_gpu_load", []):
        rows += nvsmi.parse_csv(text)
    return rows


def _version_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    nums = re.findall(r"\d+", text)
    return tuple(int(n) for n in nums[:2]) if nums else None


def arch_supported(cc: str, arch_list: list[str]) -> bool:
    """Whether torch's compiled architectures can run on compute capability `cc` ('7.0').

    A cubin for sm_XY runs on the same major at an equal or higher minor; PTX (compute_XY) is
    JIT-compiled for any equal or newer GPU. An empty list (unknown) is given the benefit.
    """
    if not arch_list:
        return True
    major, minor = (int(x) for x in cc.split(".")[:2])
    for arch in arch_list:
        match = re.match(r"(sm|compute)_(\d+)(\d)[a-z]?$", arch)
        if not match:
            continue
        a_major, a_minor = int(match.group(2)), int(match.group(3))
        if match.group(1) == "sm" and a_major == major and a_minor <= minor:
            return True
        if match.group(1) == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def _device_ccs(obs: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, 'X.Y') of each GPU, from torch when it initialised, else from nvidia-smi."""
    devices = [(d["name"], d["compute_capability"]) for d in _torch(obs).get("devices", [])]
    if devices:
        return devices
    return [
        (str(r.get("name")), str(r.get("compute_cap")))
        for r in _gpu_rows(obs)
        if r.get("compute_cap") is not None
    ]


# -- the rules, roughly in the order a user would fix them -------------------------------------


@rule
def torch_missing(obs: dict[str, Any]) -> Finding | None:
    err = _torch(obs).get("import_error")
    if not err:
        return None
    return Finding(
        "torch_missing",
        "fail",
        f"PyTorch cannot be imported in this Python ({err}).",
        "Install torch into this environment (`dlenv provision` installs the pinned "
        "stack), or point --python at the interpreter of the environment that has it.",
    )


@rule
def container_without_gpu(obs: dict[str, Any]) -> Finding | None:
    if not obs.get("in_container") or obs.get("dev_nvidia") or _smi(obs).get("rc") == 0:
        return None
    if _run(obs).get("device_asked") == "cpu":
        return None
    visible = (obs.get("env") or {}).get("NVIDIA_VISIBLE_DEVICES")
    if visible in {"void", "none", ""}:
        return Finding(
            "container_no_gpu",
            "error",
            f"This container was started with NVIDIA_VISIBLE_DEVICES={visible}, which "
            "hides every GPU from it.",
            "Start it with `docker run --gpus all` (or NVIDIA_VISIBLE_DEVICES=all).",
        )
    if visible:
        return Finding(
            "container_no_gpu",
            "error",
            "This container asks for GPUs (NVIDIA_VISIBLE_DEVICES is set) but none "
            "were passed in: the NVIDIA container runtime did not run.",
            "Install nvidia-container-toolkit on the host, run `nvidia-ctk runtime "
            "configure --runtime=docker`, restart dockerd, and start the container "
            "with `--gpus all`.",
        )
    if _torch(obs).get("cpu_only_build") and _run(obs).get("device_asked") != "cuda":
        # A CPU image (CPU torch, no GPU requested): nothing is broken, so say why, not "error".
        return Finding(
            "container_no_gpu",
            "info",
            "This is a CPU-only container (CPU build of torch, no GPU passed in): the job runs "
            "on the CPU.",
            "For GPUs use the GPU image (`dlenv local up --gpu`, or `docker run --gpus all`) on "
            "a host with the NVIDIA driver and nvidia-container-toolkit.",
        )
    return Finding(
        "container_no_gpu",
        "error",
        "This container has no access to the host's GPUs (no /dev/nvidia* devices "
        "and no nvidia-smi inside).",
        "Start it with `docker run --gpus all` (compose: a `deploy.resources."
        "reservations.devices` entry with `driver: nvidia`); the host needs the "
        "NVIDIA driver and nvidia-container-toolkit.",
    )


@rule
def no_nvidia_device(obs: dict[str, Any]) -> Finding | None:
    if _has_gpu_hardware(obs) or obs.get("in_container"):
        return None
    if _torch(obs).get("device_count"):
        return None
    asked_cpu = _run(obs).get("device_asked") == "cpu"
    return Finding(
        "no_nvidia_device",
        "info" if asked_cpu else "error",
        "No NVIDIA GPU is present on this machine.",
        "Use a GPU instance type (g4dn, g5, g6, p4d, p5, ...) for GPU work; "
        "`--device cpu` runs the same check on the CPU on purpose.",
    )


@rule
def gpu_unresponsive(obs: dict[str, Any]) -> Finding | None:
    smi = _smi(obs)
    if smi.get("rc") != -9 and "did not answer" not in (smi.get("out") or ""):
        return None
    return Finding(
        "gpu_unresponsive",
        "error",
        "nvidia-smi did not answer within its time limit: the GPU or its driver is hung.",
        "Reboot the machine (or `sudo nvidia-smi -r` with no process on the GPU); on a "
        "cloud instance, stop and start it if a reboot does not help.",
    )


@rule
def driver_not_loaded(obs: dict[str, Any]) -> Finding | None:
    text = _errors_text(obs)
    hit = (
        "couldn't communicate with the NVIDIA driver" in text
        or "Found no NVIDIA driver" in text
        or ("NVIDIA kernel module" in text and "not loaded" in text)
    )
    if not hit or "version mismatch" in text:
        return None
    if not (obs.get("pci_nvidia") or obs.get("in_container") or _smi(obs).get("rc") is not None):
        return None  # no GPU on the bus and no driver tools: that is `no_nvidia_device`
    return Finding(
        "driver_not_loaded",
        "error",
        "The NVIDIA kernel driver is not loaded, so nothing can talk to the GPU "
        '(nvidia-smi: "couldn\'t communicate with the NVIDIA driver").',
        "Install the driver (`dlenv provision` installs the pinned branch) or load "
        "it with `sudo modprobe nvidia`; with Secure Boot on, the unsigned module is "
        "refused until its key is enrolled. Then check `nvidia-smi`.",
    )


@rule
def driver_library_mismatch(obs: dict[str, Any]) -> Finding | None:
    text = _errors_text(obs)
    if "Driver/library version mismatch" not in text and not re.search(
        r"unsupported display driver / cuda driver combination|Error 803", text
    ):
        return None
    return Finding(
        "driver_library_mismatch",
        "error",
        "The NVIDIA driver was upgraded but the old kernel module is still loaded "
        "(driver/library version mismatch).",
        "Reboot the machine (or unload and reload the nvidia kernel modules while no "
        "process uses the GPU).",
    )


@rule
def cuda_not_ready(obs: dict[str, Any]) -> Finding | None:
    """CUDA error 802, cudaErrorSystemNotReady: "the system is not yet ready to start any CUDA
    work ... verify ... all required driver daemons are actively running" (CUDA runtime API).

    On the NVSwitch machines (p4d, p4de, p5, p5e, p5en) that daemon is NVIDIA Fabric Manager:
    without it nvidia-smi lists every GPU and looks healthy while every CUDA call fails, so
    torch silently reports no GPU and the job falls back to the CPU.
    """
    text = _errors_text(obs)
    if not re.search(
        r"Error 802|error=802|system not yet initialized|cudaErrorSystemNotReady|"
        r"CUDA_ERROR_SYSTEM_NOT_READY",
        text,
    ):
        return None
    seen = nvsmi.count_gpus_in_listing(_smi(obs).get("out"))
    listed = f"nvidia-smi lists {seen} GPU{'s' if seen != 1 else ''} but " if seen else ""
    return Finding(
        "cuda_not_ready",
        "error",
        f'{listed}CUDA refuses to start with error 802 ("system not yet initialized"): on '
        "NVSwitch machines (p4d, p4de, p5, p5e, p5en) NVIDIA Fabric Manager is not running.",
        "Start it with `sudo systemctl enable --now nvidia-fabricmanager` (its version must "
        "match the driver's exactly), or re-run `dlenv provision NAME`, which installs and "
        "enables it; then check `nvidia-smi -q | grep -A2 Fabric` reads State: Completed.",
    )


@rule
def driver_too_old(obs: dict[str, Any]) -> Finding | None:
    text = _errors_text(obs)
    torch_cuda = _torch(obs).get("cuda")
    header = nvsmi.parse_header(_smi(obs).get("out"))
    driver_cuda = header["cuda"]
    hit = bool(
        re.search(r"driver on your system is too old|CUDA driver version is insufficient", text)
    )
    t_ver, d_ver = _version_tuple(torch_cuda), _version_tuple(driver_cuda)
    if not hit and t_ver and d_ver and d_ver[0] < t_ver[0]:
        hit = True  # minor-version compatibility covers same-major gaps, a major gap never
    if not hit:
        return None
    found = re.search(r"found version (\d+)", text)
    driver = header["driver"] or (
        found and f"CUDA {int(found.group(1)) // 1000}.{int(found.group(1)) % 1000 // 10} capable"
    )
    supports = f", supports CUDA up to {driver_cuda}" if driver_cuda else ""
    return Finding(
        "driver_too_old",
        "error",
        f"The NVIDIA driver ({driver or 'installed'}{supports}) is too old for this "
        f"PyTorch, which was built for CUDA {torch_cuda}.",
        f"Upgrade the driver to a branch that supports CUDA {torch_cuda} (`dlenv "
        "provision` pins one), or install the torch build for the CUDA version the "
        "driver supports.",
    )


@rule
def cpu_only_torch(obs: dict[str, Any]) -> Finding | None:
    torch = _torch(obs)
    if not torch.get("cpu_only_build") or not _has_gpu_hardware(obs):
        return None
    return Finding(
        "cpu_only_torch",
        "error",
        f"This PyTorch ({torch.get('version')}) is a CPU-only build, but the machine "
        "has an NVIDIA GPU.",
        "Install the CUDA build of torch that matches the driver (e.g. the cu126 or "
        "cu128 wheel from PyTorch's own wheel index), or run `dlenv provision` for "
        "the pinned stack.",
    )


@rule
def arch_missing(obs: dict[str, Any]) -> Finding | None:
    torch = _torch(obs)
    arch_list = torch.get("arch_list") or []
    text = _errors_text(obs)
    bad = [(n, cc) for n, cc in _device_ccs(obs) if not arch_supported(cc, arch_list)]
    if not bad and "no kernel image is available" not in text:
        return None
    warned = re.search(r"(\S.*?) with CUDA capability sm_(\d)(\d+) is not compatible", text)
    if bad:
        name, cc = bad[0]
    elif warned:
        name, cc = warned.group(1), f"{warned.group(2)}.{warned.group(3)}"
    else:
        name, cc = "this GPU", "?"
    sm = "sm_" + cc.replace(".", "")
    listed = " ".join(arch_list) or "unknown"
    return Finding(
        "arch_missing",
        "error",
        f"{name} ({sm}) is not in this PyTorch build's architecture list ({listed}), "
        'so no kernel can run on it ("no kernel image is available").',
        f"Install a torch build that still ships {sm} kernels (an older CUDA variant, "
        "e.g. cu126 for V100/sm_70) or use a newer GPU type.",
    )


@rule
def shm_too_small(obs: dict[str, Any]) -> Finding | None:
    size = obs.get("shm_bytes")
    crash = _first_error(
        obs,
        r"bus error|insufficient shared memory|shm|"
        r"DataLoader worker .* (exited|killed)",
    )
    if crash is None and (size is None or size >= SHM_MIN_BYTES):
        return None
    where = f"/dev/shm is only {size / 2**20:.0f} MiB" if size is not None else "/dev/shm is full"
    if crash is not None:
        return Finding(
            "shm_too_small",
            "fail",
            f"DataLoader workers crashed ({crash['text'].splitlines()[0][:120]}); "
            f"{where}, and workers pass every batch through it.",
            "Give the container more shared memory: `docker run --shm-size=8g` or "
            "`--ipc=host` (compose: `shm_size: 8gb`).",
        )
    return Finding(
        "shm_too_small",
        "warn",
        f"{where}: DataLoader workers and NCCL exchange tensors through it and die "
        "with 'bus error' once it fills (the smoke test used fewer workers).",
        "Give the container more shared memory: `docker run --shm-size=8g` or "
        "`--ipc=host` (compose: `shm_size: 8gb`).",
    )


@rule
def cudnn_unavailable(obs: dict[str, Any]) -> Finding | None:
    torch = _torch(obs)
    text = _errors_text(obs)
    broken = bool(
        re.search(
            r"CUDNN_STATUS_\w+|cuDNN error|libcudnn\S* ?: cannot open|"
            r"Could not load library libcudnn",
            text,
        )
    )
    usable = torch.get("cuda_available") and torch.get("device_count")
    if not broken and not (usable and torch.get("cudnn_available") is False):
        return None
    return Finding(
        "cudnn_unavailable",
        "fail",
        "cuDNN is not usable by PyTorch, so convolutions fail or run without it.",
        "Reinstall torch so its bundled cuDNN (the nvidia-cudnn wheel) is present, "
        "and make sure LD_LIBRARY_PATH does not put an older libcudnn first.",
    )


@rule
def fewer_gpus(obs: dict[str, Any]) -> Finding | None:
    torch = _torch(obs)
    seen = torch.get("device_count") or 0
    expected = _run(obs).get("expect_gpus")
    driver_sees = len(_gpu_rows(obs)) or nvsmi.count_gpus_in_listing(_smi(obs).get("out"))
    env = obs.get("env") or {}
    if not expected:
        if driver_sees and seen and seen < driver_sees and "CUDA_VISIBLE_DEVICES" not in env:
            return Finding(
                "fewer_gpus",
                "warn",
                f"nvidia-smi lists {driver_sees} GPUs but PyTorch sees only {seen}.",
                "Check NVIDIA_VISIBLE_DEVICES / `--gpus` for the container.",
            )
        return None
    if seen >= expected:
        return None
    if "CUDA_VISIBLE_DEVICES" in env:
        fix = (
            f"CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']} hides the others: unset it "
            "to use them all."
        )
    elif driver_sees is not None and driver_sees < expected:
        fix = (
            "The driver itself sees only "
            f"{driver_sees}: a GPU has dropped off the bus (look for Xid 79 in `dmesg`). "
            "Stop and start the instance to move to healthy hardware."
        )
    else:
        fix = "Pass all GPUs to the container (`--gpus all`) and check NVIDIA_VISIBLE_DEVICES."
    return Finding(
        "fewer_gpus",
        "fail",
        f"PyTorch sees {seen} GPU{'s' if seen != 1 else ''} but this machine should "
        f"have {expected}.",
        fix,
    )


@rule
def out_of_memory(obs: dict[str, Any]) -> Finding | None:
    err = _first_error(obs, r"out of memory|OutOfMemoryError")
    if err is None:
        return None
    text = err["text"]
    want = re.search(r"Tried to allocate ([\d.]+ \w+)", text)
    free = re.search(r"total capacity of ([\d.]+ \w+) of which ([\d.]+ \w+) is free", text)
    detail = ""
    if want and free:
        detail = (
            f" (it tried to allocate {want.group(1)} with {free.group(2)} free of {free.group(1)})"
        )
    return Finding(
        "out_of_memory",
        "fail",
        f"The GPU ran out of memory during {err.get('phase', 'the run')}{detail}.",
        "Other processes hold GPU memory (see `nvidia-smi`): stop them, e.g. idle "
        "notebook kernels, and re-run; the smoke test needs about 6 GB free.",
    )


@rule
def gpu_busy(obs: dict[str, Any]) -> Finding | None:
    text = _errors_text(obs)
    if re.search(r"busy or unavailable", text):
        return Finding(
            "gpu_busy",
            "fail",
            "The GPU is in exclusive-process mode and another process already holds "
            'it ("CUDA-capable device(s) is/are busy or unavailable").',
            "Stop the other process (`nvidia-smi` lists it) or set the compute mode "
            "back to Default: `sudo nvidia-smi -c 0`.",
        )
    result = obs.get("query_apps") or {}
    apps = nvsmi.parse_csv(result.get("out") if result.get("rc") == 0 else None)
    apps = [a for a in apps if a.get("pid") != obs.get("pid")]
    if not apps:
        return None
    used = sum(a.get("used_gpu_memory") or 0 for a in apps)  # the header's canonical name
    names = ", ".join(sorted({str(a.get("process_name")) for a in apps}))[:120]
    return Finding(
        "gpu_busy",
        "warn",
        f"The GPU is already busy: {len(apps)} other process"
        f"{'es' if len(apps) != 1 else ''} ({names}) hold {used} MiB, so the figures "
        "below are shared with them.",
        "Stop them (`nvidia-smi` lists their PIDs) before trusting the figures.",
    )


@rule
def ecc_errors(obs: dict[str, Any]) -> Finding | None:
    before = {r.get("index"): r for r in _gpu_rows(obs)}
    after = _gpu_rows(obs, "query_gpu_after")
    for row in after:
        old = before.get(row.get("index"), {})
        new_unc = (row.get("ecc.errors.uncorrected.volatile.total") or 0) - (
            old.get("ecc.errors.uncorrected.volatile.total") or 0
        )
        if new_unc > 0:
            return Finding(
                "ecc_errors",
                "fail",
                f"GPU {row.get('index')} reported {new_unc} new uncorrectable ECC "
                "error(s) during the run: its memory is failing.",
                "Do not train on it: stop and start the instance (moves it to other "
                "hardware) or have the provider replace the GPU.",
            )
        if str(row.get("remapped_rows.failure")).lower() in {"yes", "1"}:
            return Finding(
                "ecc_errors",
                "fail",
                f"GPU {row.get('index')} ran out of spare memory rows (row remapping failure).",
                "The GPU needs replacing: stop/start the instance or contact the provider.",
            )
    rows = after or list(before.values())
    for row in rows:
        if str(row.get("remapped_rows.pending")).lower() in {"yes", "1"}:
            return Finding(
                "ecc_errors",
                "warn",
                f"GPU {row.get('index')} has a memory row remapping pending.",
                "Reset the GPU (`sudo nvidia-smi -r -i N` with no process on it) or "
                "reboot to apply it.",
            )
        if (row.get("ecc.errors.uncorrected.volatile.total") or 0) > 0:
            return Finding(
                "ecc_errors",
                "warn",
                f"GPU {row.get('index')} has "
                f"{row['ecc.errors.uncorrected.volatile.total']} uncorrectable ECC "
                "error(s) since the driver loaded.",
                "Watch it; if the count grows, stop/start the instance to move to other hardware.",
            )
    return None


@rule
def xid_errors(obs: dict[str, Any]) -> Finding | None:
    before = nvsmi.parse_xids(obs.get("kernel_log_before"))
    after = nvsmi.parse_xids(_run(obs).get("kernel_log_after"))
    new = after[len(before) :] if len(after) > len(before) else []
    if new:
        codes = ", ".join(f"Xid {e['xid']} ({e['meaning']})" for e in new[:3])
        return Finding(
            "xid_errors",
            "fail",
            f"The NVIDIA driver logged {codes} during the run.",
            "Treat the GPU as faulty: stop and start the instance (moves it to other "
            "hardware) and re-run; if it recurs, report it to the provider.",
        )
    serious = [e for e in before if e["xid"] not in nvsmi.BENIGN_XIDS]
    if serious:
        codes = ", ".join(sorted({f"Xid {e['xid']} ({e['meaning']})" for e in serious}))[:200]
        return Finding(
            "xid_errors",
            "warn",
            f"The kernel log shows earlier GPU faults: {codes}.",
            "If they recur, stop/start the instance to move to other hardware.",
        )
    return None


@rule
def throttling(obs: dict[str, Any]) -> Finding | None:
    reasons: dict[str, set[str]] = {}
    for row in _load_rows(obs):
        for reason in nvsmi.throttle_reasons(row.get("clocks_throttle_reasons.active")):
            reasons.setdefault(reason, set()).add(str(row.get("index")))
    harmful = sorted(set(reasons) & nvsmi.HARMFUL_THROTTLES)
    if harmful:
        what = ", ".join(r.replace("_", " ") for r in harmful)
        return Finding(
            "throttling",
            "warn",
            f"The GPU slowed its clocks under load for a hardware reason: {what}.",
            "Check cooling and power delivery; on a cloud instance, stop and start it "
            "to move to another host.",
        )
    rows = _gpu_rows(obs) or _load_rows(obs)
    for row in rows:
        limit, default = row.get("power.limit"), row.get("power.default_limit")
        if (
            isinstance(limit, float | int)
            and isinstance(default, float | int)
            and limit < 0.9 * default
        ):
            return Finding(
                "power_limit_lowered",
                "warn",
                f"GPU {row.get('index')}'s power limit was lowered to {limit:.0f} W "
                f"(default {default:.0f} W), which caps its speed.",
                f"Restore it with `sudo nvidia-smi -pl {default:.0f}`.",
            )
    if "sw_power_cap" in reasons:
        limit = next((r.get("power.limit") for r in rows if r.get("power.limit")), None)
        at = f" ({limit:.0f} W)" if isinstance(limit, float | int) else ""
        return Finding(
            "power_capped",
            "info",
            f"The GPU ran at its power limit{at} under load; that is normal for "
            "power-capped cards such as the T4 and L4, not a fault.",
            "Nothing to do.",
        )
    return None


@rule
def pcie_below_max(obs: dict[str, Any]) -> Finding | None:
    best: dict[Any, dict[str, Any]] = {}
    for row in _load_rows(obs):
        idx = row.get("index")
        cur = best.setdefault(idx, {"gen": 0, "width": 0, "gen_max": None, "width_max": None})
        cur["gen"] = max(cur["gen"], row.get("pcie.link.gen.current") or 0)
        cur["width"] = max(cur["width"], row.get("pcie.link.width.current") or 0)
        cur["gen_max"] = row.get("pcie.link.gen.max")
        cur["width_max"] = row.get("pcie.link.width.max")
    for idx, link in sorted(best.items(), key=lambda kv: str(kv[0])):
        gen_max, width_max = link["gen_max"], link["width_max"]
        if not gen_max or not width_max or not link["gen"] or not link["width"]:
            continue
        if link["gen"] < gen_max or link["width"] < width_max:
            return Finding(
                "pcie_below_max",
                "warn",
                f"GPU {idx}'s PCIe link runs at Gen{link['gen']} x{link['width']} "
                f"under load, below its Gen{gen_max} x{width_max} maximum, so "
                "host-to-GPU copies are slower.",
                "Reseat the card or check the slot's BIOS settings; on a cloud "
                "instance, stop and start it to move to another host.",
            )
    return None
