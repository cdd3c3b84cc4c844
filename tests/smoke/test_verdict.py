"""The GPU side of the verdict and report, fed with results shaped like a GPU run's.

CI has no GPU, so the judging of GPU figures (grades against the peak table, the corruption
check, the all-reduce sum, findings on a used GPU) is tested here on recorded observations.
"""

from __future__ import annotations

import copy

import pytest

from dlenv_smoke import diagnose
from dlenv_smoke.job import PLANS, Options, grade_entry
from dlenv_smoke.phases import PhaseResult
from dlenv_smoke.report import judge, render_text
from smoke.smokejob import DATA, load_case

H100 = "NVIDIA H100 80GB HBM3"


def gpu_results(tflops=760.0, fp32=52.0, gbps=2950.0, corrupt=False, allreduce=None, name=H100):
    entry = {
        "device": "cuda:0",
        "name": name,
        "matmul": {
            "precision": "bf16",
            "n": 8192,
            "reps": 300,
            "tflops": tflops,
            "check": {
                "rows_checked": 64,
                "max_rel_error": 0.5 if corrupt else 3e-3,
                "tolerance": 2e-2,
                "passed": not corrupt,
            },
        },
        "matmul_fp32": {
            "precision": "fp32",
            "n": 8192,
            "reps": 20,
            "tflops": fp32,
            "check": {"rows_checked": 64, "max_rel_error": 2e-6, "tolerance": 1e-4, "passed": True},
        },
        "bandwidth": {"bytes_copied": 2 << 30, "reps": 50, "gbps": gbps, "copy_verified": True},
    }
    grade_entry(entry)
    train = {
        "passed": True,
        "problems": [],
        "device": "cuda:0",
        "precision": "bf16",
        "grad_scaler": False,
        "workers": 4,
        "loader_error": None,
        "steps": 1024,
        "epochs": 4,
        "batch_size": 256,
        "loss_before": 1.39,
        "loss_after": 0.02,
        "loss_factor": 69.5,
        "min_loss_factor": 4.0,
        "accuracy_before": 0.25,
        "accuracy": 0.998,
        "min_accuracy": 0.8,
        "chance": 0.25,
        "samples_per_s": 90000.0,
    }
    return {"train": train, "figures": {"devices": [entry]}, "allreduce": allreduce}


def run_judge(results, case="healthy_h100", names=(H100,), **opts):
    obs = load_case(DATA / "diagnosis" / case)
    phases = {n: PhaseResult(n, "ok", 1.0, 60.0) for n in ("probe", "torch", "train", "figures")}
    return judge(
        opts=Options(**opts),
        obs=obs,
        kind="cuda",
        devices=["cuda:0"],
        names=list(names),
        results=results,
        phases=phases,
        findings=diagnose.diagnose(obs),
        plan=PLANS[("full", "cuda")],
        total_s=41.0,
    )


def test_healthy_h100_passes_with_graded_figures():
    report = run_judge(gpu_results())
    assert report["verdict"] == "pass" and report["exit_code"] == 0, report["reasons"]
    fig = report["figures"]["devices"][0]
    assert fig["peak_table_row"] == "H100-SXM"
    assert fig["matmul"]["fraction_of_peak"] == pytest.approx(760 / 989.4, abs=1e-3)
    assert fig["matmul"]["grade"] == "pass" and fig["bandwidth"]["grade"] == "pass"
    text = render_text(report)
    assert "PASS: deep learning works on 1 GPU (NVIDIA H100 80GB HBM3)" in text
    assert "77% of 989.4 peak" in text and "PCIe Gen5 x16 (max Gen5 x16)" in text


def test_mig_slice_is_measured_but_not_graded_against_the_full_gpu():
    """A 3g.40gb slice has 60 of the H100's 132 SMs: 330 TFLOP/s is healthy for it, but 33 % of
    the full GPU's peak would grade it a failure (recorded real MIG capture, driver 590.48.01)."""
    mig = "NVIDIA H100 80GB HBM3 MIG 3g.40gb"
    report = run_judge(
        gpu_results(tflops=330.0, fp32=24.0, gbps=1300.0, name=mig),
        case="mig_h100_slice",
        names=(mig,),
    )
    assert report["verdict"] == "pass", report["reasons"]
    fig = report["figures"]["devices"][0]
    assert fig["peak_table_row"] is None and "grade" not in fig["matmul"]
    assert "MIG slice 3g.40gb" in fig["not_graded"]
    assert "not graded against the full GPU" in render_text(report)


def test_silent_corruption_fails():
    report = run_judge(gpu_results(corrupt=True))
    assert report["verdict"] == "fail" and report["exit_code"] == 1
    assert any("silent corruption" in r for r in report["reasons"])
    assert "CORRUPT" in render_text(report)


def test_far_below_typical_fails_and_middling_warns():
    slow = run_judge(gpu_results(tflops=250.0))
    assert slow["verdict"] == "fail"
    assert slow["figures"]["devices"][0]["matmul"]["grade"] == "fail"
    middling = run_judge(gpu_results(gbps=2000.0))  # 60 % of peak, 70 % of typical
    assert middling["verdict"] == "pass"
    assert middling["figures"]["devices"][0]["bandwidth"]["grade"] == "warn"


def test_wrong_allreduce_sum_fails():
    bad = {
        "gpus": 8,
        "bytes": 256 << 20,
        "reps": 20,
        "algbw_gbps": 150.0,
        "busbw_gbps": 262.5,
        "sum_verified": False,
    }
    report = run_judge(gpu_results(allreduce=bad))
    assert report["verdict"] == "fail" and any("all-reduce" in r for r in report["reasons"])


def test_a_fail_finding_on_a_used_gpu_fails_the_verdict():
    report = run_judge(gpu_results(), case="ecc_errors_during_run")
    assert report["verdict"] == "fail"
    assert {d["code"] for d in report["diagnosis"]} == {"ecc_errors", "xid_errors"}


def test_failed_training_fails():
    results = gpu_results()
    results["train"] = copy.deepcopy(results["train"]) | {
        "passed": False,
        "problems": ["the loss became NaN/inf"],
    }
    report = run_judge(results)
    assert report["verdict"] == "fail" and "training: the loss became NaN/inf" in report["reasons"]
