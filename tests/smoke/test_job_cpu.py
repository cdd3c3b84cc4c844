"""The whole smoke-test job, run for real on the CPU in a subprocess (as CI runs it)."""

from __future__ import annotations

import pytest

from dlenv_smoke import diagnose
from smoke.smokejob import run_job

pytestmark = pytest.mark.slow


def test_cpu_quick_run_passes_and_learns(cpu_report):
    code, report, _err = cpu_report
    assert code == 0, report["reasons"]
    assert report["verdict"] == "cpu-only"
    assert report["exit_code"] == 0
    assert report["device"] == "cpu" and report["device_asked"] == "cpu"
    assert report["torch"]["version"]
    assert report["sabotage"] is None
    train = report["train"]
    assert train["passed"] and not train["problems"]
    assert train["accuracy"] >= train["min_accuracy"] >= 0.8 > 3 * train["chance"] - 0.01
    assert train["loss_before"] / train["loss_after"] >= train["min_loss_factor"] >= 4
    assert train["accuracy"] > train["accuracy_before"] + 0.4  # it learned; it did not start there
    assert train["samples_per_s"] > 0 and train["steps"] > 0
    assert train["workers"] >= 1, "the DataLoader should use a worker process when /dev/shm allows"
    assert train["precision"] == "fp32"


def test_cpu_report_has_figures_timings_and_environment(cpu_report):
    _code, report, err = cpu_report
    fig = report["figures"]["devices"][0]
    assert fig["matmul_fp32"]["tflops"] > 0
    assert fig["matmul_fp32"]["check"]["passed"]
    assert fig["matmul_fp32"]["check"]["max_rel_error"] < 1e-4
    assert fig["bandwidth"]["gbps"] > 0 and fig["bandwidth"]["copy_verified"]
    timings = report["timings"]
    assert set(timings) >= {"probe", "train", "figures", "total"}
    assert timings["total"] >= timings["train"] > 0
    assert all(p["status"] == "ok" for p in report["phases"].values())
    assert all(p["limit_s"] > 0 for p in report["phases"].values())
    env = report["environment"]
    assert env["cpu_count"] >= 1 and env["torch"] == report["torch"]["version"]
    assert "smoke: train ok" in err  # progress goes to stderr, the JSON alone to stdout


def test_cpu_quick_fits_ci_budget(cpu_report):
    _code, report, _err = cpu_report
    # 15 s is the quick budget; allow for a busy shared 2-core runner, but not a runaway
    assert report["timings"]["total"] < 30, report["timings"]


@pytest.mark.parametrize("sabotage", ["labels"])
def test_broken_model_fails_the_verdict(sabotage):
    code, report, _out, err = run_job(
        "--device", "cpu", "--quick", "--json", env={"DLENV_SMOKE_SABOTAGE": sabotage}
    )
    assert report is not None, err
    assert code == 1
    assert report["verdict"] == "fail" and report["sabotage"] == sabotage
    assert not report["train"]["passed"]
    assert report["train"]["accuracy"] < 0.6
    assert any(r.startswith("training:") for r in report["reasons"])


def test_a_hung_phase_is_abandoned_at_its_limit():
    """A phase that never returns (like a CUDA call stuck in the driver) must not hang the job:
    it is reported as timed out, the rest is skipped, and the job exits 1 with its report
    (a job that hung with it would run into run_job's subprocess timeout and fail the test)."""
    code, report, _out, err = run_job(
        "--device",
        "cpu",
        "--json",
        env={"DLENV_SMOKE_SABOTAGE": "hang", "DLENV_SMOKE_LIMIT_SCALE": "0.03"},
    )
    assert report is not None, err
    assert code == 1 and report["verdict"] == "fail" and report["timed_out"]
    assert report["phases"]["train"]["status"] == "timeout"
    assert report["phases"]["train"]["limit_s"] == pytest.approx(90 * 0.03)
    assert report["phases"]["figures"]["status"] == "skipped"
    assert any("train timeout" in r for r in report["reasons"])


def test_no_gpu_default_is_cpu_only_exit_10():
    code, _report, out, err = run_job("--quick")
    assert code == 10, err
    assert "PASS, CPU only" in out and "no usable GPU" in out
    assert "Diagnosis" in out  # it says why there is no GPU


def test_device_cuda_without_gpu_fails_fast():
    code, report, _out, err = run_job("--device", "cuda", "--json")
    assert report is not None, err
    assert code == 1 and report["verdict"] == "fail"
    assert report["phases"]["train"]["status"] == "skipped"
    assert any("--device cuda" in r for r in report["reasons"])
    assert report["diagnosis"], "a failed GPU demand must say why"
    # the report carries its raw observations: replaying them gives the same diagnosis, which
    # is how a report from a real broken machine becomes a data/diagnosis case
    replayed = [f.to_dict() for f in diagnose.diagnose(report["observations"])]
    assert replayed == report["diagnosis"]
