"""The smoke-test job: probe, train, measure, diagnose, judge, each phase under a time limit.

Budgets: `quick` aims at ~15 s and `full` at ~60 s on a GPU (torch import included); every
phase also has a hard limit well above its budget, after which it is abandoned (see `phases`).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from dlenv_smoke import diagnose, nvsmi, peaks, probe, torchprobe
from dlenv_smoke.phases import PhaseResult, run_phase
from dlenv_smoke.report import judge
from dlenv_smoke.sampler import LoadSampler

SABOTAGE_ENV = "DLENV_SMOKE_SABOTAGE"
"""Test-only: 'labels' shuffles the training labels, 'lr0' zeroes the learning rate, so the tests
can prove that a model which does not learn fails the verdict; 'hang' blocks training forever,
to prove the phase time limit. Always shown in the report."""
SABOTAGES = ("labels", "lr0", "hang")
LIMIT_SCALE_ENV = "DLENV_SMOKE_LIMIT_SCALE"


@dataclass
class Options:
    device: str = "auto"  # auto | cuda | cpu
    mode: str = "quick"  # quick | full
    expect_gpus: int | None = None
    amp: str = "auto"
    sabotage: str | None = None
    limit_scale: float = 1.0
    """Multiplies the train/figures/allreduce time limits (slow machines > 1, tests < 1)."""


# Per mode and device kind: training size, figure sizes and time targets, phase limits (s).
PLANS: dict[tuple[str, str], dict[str, Any]] = {
    ("quick", "cpu"): {
        "budget_s": 15,
        "train": {
            "image_size": 16,
            "width": 16,
            "train_samples": 2048,
            "eval_samples": 512,
            "epochs": 2,
            "batch_size": 64,
            "workers": 1,
        },
        "matmul_n": 512,
        "fp32_n": 512,
        "copy_bytes": 64 << 20,
        "target_s": 0.25,
        "limits": {"train": 90, "figures": 60},
    },
    ("full", "cpu"): {
        "budget_s": 60,
        "train": {
            "image_size": 16,
            "width": 16,
            "train_samples": 8192,
            "eval_samples": 512,
            "epochs": 3,
            "batch_size": 64,
            "workers": 1,
        },
        "matmul_n": 1024,
        "fp32_n": 1024,
        "copy_bytes": 256 << 20,
        "target_s": 1.0,
        "limits": {"train": 240, "figures": 120},
    },
    ("quick", "cuda"): {
        "budget_s": 15,
        "train": {
            "image_size": 32,
            "width": 32,
            "train_samples": 16384,
            "epochs": 3,
            "batch_size": 256,
        },
        "matmul_n": 8192,
        "fp32_n": 4096,
        "copy_bytes": 1 << 30,
        "target_s": 0.5,
        "limits": {"train": 90, "figures": 90},
    },
    ("full", "cuda"): {
        "budget_s": 60,
        "train": {
            "image_size": 32,
            "width": 64,
            "train_samples": 65536,
            "epochs": 4,
            "batch_size": 256,
        },
        "matmul_n": 8192,
        "fp32_n": 8192,
        "copy_bytes": 2 << 30,
        "target_s": 3.0,
        "limits": {"train": 240, "figures": 240},
    },
}
PROBE_LIMIT_S = 60
ALLREDUCE_LIMIT_S = 60


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _phase(name: str, fn: Any, limit: float, phases: dict[str, PhaseResult]) -> PhaseResult:
    _progress(f"smoke: {name} ...")
    result = run_phase(name, fn, limit)
    phases[name] = result
    extra = f" ({result.error})" if result.error else ""
    _progress(f"smoke: {name} {result.status} in {result.seconds:.1f}s{extra}")
    return result


def usable_gpu(torch_info: dict[str, Any]) -> bool:
    """Whether torch can really run kernels on GPU 0 (initialised, and its arch is compiled)."""
    if not torch_info.get("cuda_available") or not torch_info.get("device_count"):
        return False
    if torch_info.get("init_error"):
        return False
    dev0 = (torch_info.get("devices") or [{}])[0]
    cc = dev0.get("compute_capability")
    return cc is None or diagnose.arch_supported(cc, torch_info.get("arch_list") or [])


def _train(device: str, plan: dict[str, Any], opts: Options, limit: float) -> dict[str, Any]:
    from dlenv_smoke.train import TrainConfig, train

    cfg = dict(plan["train"])
    if device.startswith("cuda"):
        shm = probe.shm_bytes()
        cpus = os.cpu_count() or 2
        cfg["workers"] = min(4, max(1, cpus - 1))
        if shm is not None and shm < diagnose.SHM_MIN_BYTES:
            cfg["workers"] = 0  # would die with 'bus error'; diagnosed separately
    else:
        import torch

        shm_now = probe.shm_bytes()
        if shm_now is not None and shm_now < 64 << 20:
            cfg["workers"] = 0
        # leave a core to the loader worker: oversubscribed intra-op threads crawl
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - cfg["workers"]))
    return train(
        TrainConfig(
            device=device, amp=opts.amp, sabotage=opts.sabotage, time_limit_s=0.8 * limit, **cfg
        )
    )


def _figures(devices: list[str], plan: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Matmul (best low precision and FP32), corruption check and bandwidth on every device.

    GPU 0 gets the full measurement; the other GPUs of a multi-GPU host get a shorter
    checked matmul and copy each, so every visible GPU is exercised within the budget.
    """
    import torch

    from dlenv_smoke.train import choose_precision

    per_device = []
    for i, name in enumerate(devices):
        device = torch.device(name)
        target = plan["target_s"] if i == 0 else min(plan["target_s"], 0.25)
        entry: dict[str, Any] = {"device": name, "name": names[i]}
        if device.type == "cuda":
            low, _ = choose_precision(device, "auto")
            entry["matmul"] = matmul_figure(device, low, plan["matmul_n"], target)
            free, _total = torch.cuda.mem_get_info(device)
            nbytes = int(min(plan["copy_bytes"], free // 3))
        else:
            nbytes = plan["copy_bytes"]
        if i == 0 or device.type != "cuda":
            entry["matmul_fp32"] = matmul_figure(device, "fp32", plan["fp32_n"], target)
        entry["bandwidth"] = bandwidth_figure(device, nbytes, target)
        grade_entry(entry)
        per_device.append(entry)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return {"devices": per_device}


def matmul_figure(device: Any, precision: str, n: int, target: float) -> dict[str, Any]:
    from dlenv_smoke import figures

    result = figures.matmul(device, precision, n, target, check=True)
    result["tflops"] = round(result["tflops"], 3)
    return result


def bandwidth_figure(device: Any, nbytes: int, target: float) -> dict[str, Any]:
    from dlenv_smoke import figures

    result = figures.bandwidth(device, nbytes, target)
    result["gbps"] = round(result["gbps"], 1)
    return result


def grade_entry(entry: dict[str, Any]) -> None:
    """Add datasheet peak, fraction and pass/warn/fail grade to each figure of a known GPU."""
    peak = peaks.lookup(entry["name"]) if entry["device"].startswith("cuda") else None
    entry["peak_table_row"] = peak.key if peak else None
    profile = peaks.mig_profile(entry["name"])
    if profile:
        # Skipped, not scaled: a slice's SM share is known, but its memory bandwidth, L2 and
        # copy engines follow its memory slices, and no datasheet lists a per-slice peak.
        entry["not_graded"] = (
            f"MIG slice {profile}: measured, not graded against the full GPU's datasheet peak"
        )
    if peak is None:
        return
    pairs = [
        ("matmul", peak.tensor_tflops, peak.typical_tensor_fraction, "tflops"),
        ("matmul_fp32", peak.fp32_tflops, peak.typical_fp32_fraction, "tflops"),
        ("bandwidth", peak.mem_gbps, peak.typical_mem_fraction, "gbps"),
    ]
    for key, peak_value, typical, unit in pairs:
        fig = entry.get(key)
        if not fig:
            continue
        if key == "matmul" and fig["precision"] != peak.tensor_dtype:
            continue
        fraction, grade = peaks.grade(fig[unit], peak_value, typical)
        fig.update(
            {
                "peak": peak_value,
                "fraction_of_peak": round(fraction, 3),
                "typical_fraction": typical,
                "grade": grade,
            }
        )


def _allreduce(devices: list[str], plan: dict[str, Any]) -> dict[str, Any]:
    import torch

    from dlenv_smoke import figures

    result = figures.allreduce(
        [torch.device(d) for d in devices], min(plan["copy_bytes"], 256 << 20), plan["target_s"]
    )
    result["algbw_gbps"] = round(result["algbw_gbps"], 1)
    result["busbw_gbps"] = round(result["busbw_gbps"], 1)
    return result


def run_job(opts: Options) -> dict[str, Any]:
    """Run everything and return the report dict (see `report.judge` for the verdict)."""
    start = time.monotonic()
    phases: dict[str, PhaseResult] = {}
    want_gpu = opts.device != "cpu"

    probed = _phase("probe", lambda: probe.collect_host(want_gpu=want_gpu), PROBE_LIMIT_S, phases)
    obs: dict[str, Any] = probed.value or {}
    # torch import + CUDA init is its own phase: on a wedged GPU it is what hangs
    torch_phase = _phase(
        "torch", lambda: torchprobe.collect(want_gpu=want_gpu), PROBE_LIMIT_S, phases
    )
    obs["torch"] = torch_phase.value or {}
    obs["pid"] = os.getpid()
    run: dict[str, Any] = {
        "device_asked": opts.device,
        "expect_gpus": opts.expect_gpus,
        "mode": opts.mode,
        "errors": [],
        "query_gpu_load": [],
    }
    obs["run"] = run
    torch_info = obs["torch"]

    gpu = want_gpu and usable_gpu(torch_info)
    devices = [f"cuda:{i}" for i in range(torch_info["device_count"])] if gpu else ["cpu"]
    names = [d["name"] for d in torch_info["devices"]] if gpu else ["CPU"]
    kind = "cuda" if gpu else "cpu"
    plan = PLANS[(opts.mode, kind)]
    results: dict[str, Any] = {"train": None, "figures": None, "allreduce": None}

    can_run = (
        "import_error" not in torch_info and probed.status == "ok" and torch_phase.status == "ok"
    )
    if opts.device == "cuda" and not gpu:
        can_run = False  # GPU demanded, none usable: say why instead of testing the CPU
    timed_out = "timeout" in (probed.status, torch_phase.status)
    limits = {k: v * opts.limit_scale for k, v in plan["limits"].items()}
    limits["allreduce"] = ALLREDUCE_LIMIT_S * opts.limit_scale
    with LoadSampler(enabled=gpu and (obs.get("nvidia_smi") or {}).get("rc") == 0) as sampler:
        steps = [
            ("train", lambda: _train(devices[0], plan, opts, limits["train"]), limits["train"]),
            ("figures", lambda: _figures(devices, plan, names), limits["figures"]),
        ]
        if gpu and len(devices) > 1:
            steps.append(("allreduce", lambda: _allreduce(devices, plan), limits["allreduce"]))
        for name, fn, limit in steps:
            if not can_run or timed_out:
                phases[name] = PhaseResult(name, "skipped")
                continue
            res = _phase(name, fn, limit, phases)
            results[name] = res.value
            if res.error:
                run["errors"].append({"phase": name, "text": res.error})
            if name == "train" and res.value and res.value.get("loader_error"):
                run["errors"].append({"phase": name, "text": res.value["loader_error"]})
            timed_out = timed_out or res.status == "timeout"
    run["query_gpu_load"] = sampler.samples
    if gpu and not timed_out:
        run["query_gpu_after"] = probe.query_gpu()
        obs["query_gpu_after"] = run["query_gpu_after"]
        run["kernel_log_after"] = probe.kernel_log()

    findings = diagnose.diagnose(obs)
    report = judge(
        opts=opts,
        obs=obs,
        kind=kind,
        devices=devices,
        names=names,
        results=results,
        phases=phases,
        findings=findings,
        plan=plan,
        total_s=time.monotonic() - start,
    )
    report["timed_out"] = timed_out
    return report


def environment(obs: dict[str, Any]) -> dict[str, Any]:
    """The report's environment section, from the observations."""
    torch_info = obs.get("torch") or {}
    header = nvsmi.parse_header((obs.get("nvidia_smi") or {}).get("out"))
    rows = nvsmi.parse_csv(
        (obs.get("query_gpu") or {}).get("out")
        if (obs.get("query_gpu") or {}).get("rc") == 0
        else None
    )
    return {
        "python": torch_info.get("python"),
        "torch": torch_info.get("version"),
        "torch_cuda": torch_info.get("cuda"),
        "cudnn": torch_info.get("cudnn"),
        "cpu_only_build": torch_info.get("cpu_only_build"),
        "arch_list": torch_info.get("arch_list"),
        "driver": header["driver"],
        "driver_cuda": header["cuda"],
        "gpus": [nvsmi.gpu_summary(r) for r in rows] or torch_info.get("devices") or [],
        "cpu_count": obs.get("cpu_count"),
        "shm_bytes": obs.get("shm_bytes"),
        "in_container": obs.get("in_container"),
        "env": obs.get("env"),
    }
