"""The verdict, the exit code and the printed report.

The verdict is decided in one place from everything the job saw:
  fail      something needed for deep learning did not work (exit 1), including
            `--device cuda` with no usable GPU;
  pass      the whole job passed on the GPU (exit 0);
  cpu-only  the whole job passed, but on the CPU: exit 0 when `--device cpu` asked for
            that, else 10, so callers can tell "works, but no usable GPU" from a failure.
"""

from __future__ import annotations

from typing import Any

from dlenv_smoke import EXIT_CPU_ONLY, EXIT_FAIL, EXIT_PASS, __version__
from dlenv_smoke.diagnose import Finding
from dlenv_smoke.phases import PhaseResult


def judge(
    *,
    opts: Any,
    obs: dict[str, Any],
    kind: str,
    devices: list[str],
    names: list[str],
    results: dict[str, Any],
    phases: dict[str, PhaseResult],
    findings: list[Finding],
    plan: dict[str, Any],
    total_s: float,
) -> dict[str, Any]:
    from dlenv_smoke.job import environment

    reasons: list[str] = []
    torch_info = obs.get("torch") or {}
    for ph in phases.values():
        if ph.status in {"failed", "timeout"}:
            reasons.append(f"{ph.name} {ph.status}: {ph.error}")
    if opts.device == "cuda" and kind != "cuda":
        reasons.append("--device cuda was asked for, but no usable GPU was found")
    train = results.get("train")
    if train is not None and not train["passed"]:
        reasons += [f"training: {p}" for p in train["problems"]]
    figures = results.get("figures") or {}
    for entry in figures.get("devices", []):
        for key in ("matmul", "matmul_fp32"):
            check = (entry.get(key) or {}).get("check")
            if check and not check["passed"]:
                reasons.append(
                    f"{entry['device']} {key} result differs from the reference "
                    f"(max rel. error {check['max_rel_error']:.2e}): silent corruption"
                )
        if entry.get("bandwidth") and not entry["bandwidth"]["copy_verified"]:
            reasons.append(f"{entry['device']} copy produced wrong data")
        for key in ("matmul", "matmul_fp32", "bandwidth"):
            if (entry.get(key) or {}).get("grade") == "fail":
                reasons.append(f"{entry['device']} {key} is far below what this GPU reaches")
    allreduce = results.get("allreduce")
    if allreduce is not None and not allreduce["sum_verified"]:
        reasons.append("NCCL all-reduce returned a wrong sum")
    for f in findings:
        if f.severity == "fail" or (f.severity == "error" and kind == "cuda"):
            reasons.append(f"{f.code}: {f.message}")
    if "import_error" in torch_info and not any(r.startswith("torch_missing") for r in reasons):
        reasons.append(f"torch cannot be imported: {torch_info['import_error']}")
    if train is None and not reasons:
        reasons.append("training did not run")

    if reasons:
        verdict, code = "fail", EXIT_FAIL
    elif kind == "cuda":
        verdict, code = "pass", EXIT_PASS
    else:
        verdict = "cpu-only"
        code = EXIT_PASS if opts.device == "cpu" else EXIT_CPU_ONLY

    timings = {n: round(ph.seconds, 2) for n, ph in phases.items() if ph.status != "skipped"}
    timings["total"] = round(total_s, 2)
    return {
        "smoke_version": __version__,
        "verdict": verdict,
        "exit_code": code,
        "reasons": reasons,
        "device": kind,
        "devices": [{"device": d, "name": n} for d, n in zip(devices, names, strict=True)],
        "device_asked": opts.device,
        "mode": opts.mode,
        "sabotage": opts.sabotage,
        "torch": {
            "version": torch_info.get("version"),
            "cuda": torch_info.get("cuda"),
            "cudnn": torch_info.get("cudnn"),
            "cpu_only_build": torch_info.get("cpu_only_build"),
        },
        "environment": environment(obs),
        "diagnosis": [f.to_dict() for f in findings],
        "train": train,
        "figures": results.get("figures"),
        "allreduce": allreduce,
        "phases": {
            name: {
                "status": ph.status,
                "seconds": round(ph.seconds, 2),
                "limit_s": ph.timeout_s,
                "error": ph.error,
            }
            for name, ph in phases.items()
        },
        "timings": timings,
        "budget_s": plan["budget_s"],
        "over_budget": total_s > plan["budget_s"],
        "observations": obs,
    }


def verdict_line(report: dict[str, Any]) -> str:
    v = report["verdict"]
    if v == "pass":
        n = len(report["devices"])
        return f"PASS: deep learning works on {n} GPU{'s' if n != 1 else ''} ({report['devices'][0]['name']})"
    if v == "cpu-only":
        why = (
            "as asked with --device cpu"
            if report["device_asked"] == "cpu"
            else "no usable GPU was found"
        )
        return f"PASS, CPU only: the job passed on the CPU ({why})"
    return "FAIL: " + "; ".join(report["reasons"][:3])


def _fig(fig: dict[str, Any] | None, unit: str, key: str) -> str:
    if not fig:
        return "-"
    text = f"{fig[key]:.2f} {unit}" if fig[key] < 100 else f"{fig[key]:.0f} {unit}"
    if "peak" in fig:
        text += (
            f"  = {fig['fraction_of_peak']:.0%} of {fig['peak']:g} peak "
            f"(typical {fig['typical_fraction']:.0%})  {fig['grade'].upper()}"
        )
    return text


def render_text(report: dict[str, Any]) -> str:
    """The human report: environment, diagnosis, training, figures, timings, verdict."""
    env = report["environment"]
    lines = [
        f"dlenv smoke test {report['smoke_version']}  (mode {report['mode']}, "
        f"device {report['device_asked']} -> {report['device']})"
    ]
    if report.get("sabotage"):
        lines.append(
            f"  !! test sabotage active: {report['sabotage']} (learning broken on purpose)"
        )
    lines.append("Environment")
    build = "CPU-only build" if env.get("cpu_only_build") else f"CUDA {env.get('torch_cuda')}"
    lines.append(
        f"  torch {env.get('torch')} ({build}), cuDNN {env.get('cudnn') or '-'}, "
        f"Python {env.get('python')}"
    )
    lines.append(
        f"  NVIDIA driver {env.get('driver') or '-'} (CUDA {env.get('driver_cuda') or '-'})"
        f", CPUs {env.get('cpu_count')}, /dev/shm "
        + (f"{env['shm_bytes'] / 2**30:.1f} GiB" if env.get("shm_bytes") else "-")
        + (", in a container" if env.get("in_container") else "")
    )
    for gpu in env.get("gpus") or []:
        if "pcie" in gpu:
            p = gpu["pcie"]
            lines.append(
                f"  GPU {gpu['name']}: {gpu['memory_mib']} MiB, CC {gpu['compute_capability']}, "
                f"SM {gpu['sm_clock_mhz']}/{gpu['sm_clock_max_mhz']} MHz, power limit "
                f"{gpu['power_limit_w']} W, ECC {gpu['ecc_mode']} "
                f"(uncorrected {gpu['ecc_uncorrected']}), PCIe Gen{p['gen']} x{p['width']} "
                f"(max Gen{p['gen_max']} x{p['width_max']})"
            )
        else:
            lines.append(
                f"  GPU {gpu['name']}: {gpu['memory_mib']} MiB, CC {gpu['compute_capability']}"
            )
    if not env.get("gpus"):
        lines.append("  GPUs: none usable")
    if report["diagnosis"]:
        lines.append("Diagnosis")
        for f in report["diagnosis"]:
            lines.append(f"  [{f['severity']}] {f['message']}")
            lines.append(f"          fix: {f['fix']}")
    t = report.get("train")
    if t:
        lines.append(
            f"Training ({t['device']}, {t['precision']}"
            f"{' + GradScaler' if t['grad_scaler'] else ''}, DataLoader workers "
            f"{t['workers']}, {t['steps']} steps of {t['batch_size']})"
        )
        lines.append(
            f"  held-out loss {t['loss_before']:.3f} -> {t['loss_after']:.3f} "
            f"({t['loss_factor']}x lower, needs >= {t['min_loss_factor']:g}x)"
        )
        lines.append(
            f"  held-out accuracy {t['accuracy']:.1%} (chance {t['chance']:.0%}, "
            f"needs >= {t['min_accuracy']:.0%}), {t['samples_per_s']:.0f} samples/s"
        )
    figs = report.get("figures")
    if figs:
        lines.append("Figures")
        for e in figs["devices"]:
            lines.append(
                f"  {e['device']} ({e['name']}"
                + (f", peak table: {e['peak_table_row']}" if e.get("peak_table_row") else "")
                + ")"
            )
            if e.get("not_graded"):
                lines.append(f"    {e['not_graded']}")
            if e.get("matmul"):
                m = e["matmul"]
                lines.append(
                    f"    matmul {m['precision']} n={m['n']}: {_fig(m, 'TFLOP/s', 'tflops')}"
                )
            if e.get("matmul_fp32"):
                m = e["matmul_fp32"]
                lines.append(
                    f"    matmul fp32 (TF32 off) n={m['n']}: {_fig(m, 'TFLOP/s', 'tflops')}"
                )
            checks = [e[k]["check"] for k in ("matmul", "matmul_fp32") if e.get(k)]
            if checks:
                worst = max(c["max_rel_error"] for c in checks)
                ok = all(c["passed"] for c in checks)
                lines.append(
                    f"    result vs float64 reference: max rel. error {worst:.1e} "
                    f"({'ok' if ok else 'CORRUPT'})"
                )
            if e.get("bandwidth"):
                b = e["bandwidth"]
                lines.append(
                    f"    memory copy {b['bytes_copied'] / 2**30:.2f} GiB (read+write): "
                    f"{_fig(b, 'GB/s', 'gbps')}"
                )
    a = report.get("allreduce")
    if a:
        lines.append(
            f"  NCCL all-reduce over {a['gpus']} GPUs, {a['bytes'] / 2**20:.0f} MiB: "
            f"bus bandwidth {a['busbw_gbps']} GB/s "
            f"({'sum ok' if a['sum_verified'] else 'WRONG SUM'})"
        )
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in report["timings"].items())
    lines.append(
        f"Timings: {timing} (budget {report['budget_s']}s"
        f"{', over budget' if report['over_budget'] else ''})"
    )
    lines.append(f"Verdict: {verdict_line(report)}  [exit {report['exit_code']}]")
    return "\n".join(lines)
