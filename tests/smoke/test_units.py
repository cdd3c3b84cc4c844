"""Unit tests of the job's pieces: parsers, arch rules, peaks, figures' checks, phase limits."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import types

import pytest
import torch

from dlenv_smoke import diagnose, figures, nvsmi, peaks
from dlenv_smoke.phases import run_phase
from dlenv_smoke.train import TrainConfig, choose_precision, train
from smoke.smokejob import DATA, clean_env


def test_peak_table_units_from_first_principles():
    """FP32 peak = SMs x FP32 lanes x 2 FLOP (FMA) x boost clock; tensor peak = SMs x dense
    tensor FLOP/clock/SM x clock (datasheets quote it at a sustained clock up to ~16 % lower).
    A value in GFLOP/s, a sparse figure or a GiB-based bandwidth would break these."""
    tensor_per_sm = {
        (7, 0): 1024,
        (7, 5): 1024,
        (8, 0): 2048,
        (8, 6): 1024,
        (8, 9): 1024,
        (9, 0): 4096,
    }
    half_rate_tensor = {"A10G": 512}
    """AWS's A10G: bf16/fp16 with FP32 accumulation at half the A10's per-SM tensor rate."""
    keys = {p.key for p in peaks.PEAKS}
    assert {
        "T4",
        "A10G",
        "L4",
        "L40S",
        "V100",
        "A100-40GB",
        "A100-80GB",
        "H100-SXM",
        "H100-PCIe",
        "H200",
    } <= keys
    for p in peaks.PEAKS:
        fp32 = p.sm_count * p.fp32_cores_per_sm * 2 * p.boost_clock_mhz * 1e6 / 1e12
        assert fp32 == pytest.approx(p.fp32_tflops, rel=0.03), p.key
        per_sm = half_rate_tensor.get(p.key, tensor_per_sm[p.compute_capability])
        tensor = p.sm_count * per_sm * p.boost_clock_mhz * 1e6 / 1e12
        assert 0.84 * tensor <= p.tensor_tflops <= 1.02 * tensor, p.key
        assert 250 <= p.mem_gbps <= 6000, p.key  # GB/s, not TB/s or MB/s
        assert 0.2 <= p.typical_tensor_fraction <= 0.9 and 0.5 <= p.typical_mem_fraction <= 0.95
    assert peaks.lookup("NVIDIA H100 80GB HBM3").key == "H100-SXM"
    assert peaks.lookup("NVIDIA H100 PCIe").key == "H100-PCIe"
    assert peaks.lookup("NVIDIA L4").key == "L4"
    assert peaks.lookup("NVIDIA L40S").key == "L40S"
    assert peaks.lookup("NVIDIA A100-SXM4-80GB").mem_gbps == 2039.0
    assert peaks.lookup("Tesla T4").tensor_dtype == "fp16"
    assert peaks.lookup("NVIDIA GeForce RTX 4090") is None
    # torch on a real g5.xlarge: _CudaDeviceProperties(name='NVIDIA A10G', major=8, minor=6,
    # total_memory=22587MB, multi_processor_count=80, ...) (TorchCodec's CUDA decoding tutorial)
    assert peaks.lookup("NVIDIA A10G").sm_count == 80
    # a MIG slice is not the whole GPU: no row, so no grade against the full GPU's peak
    assert peaks.lookup("NVIDIA H100 80GB HBM3 MIG 1g.10gb") is None
    assert peaks.mig_profile("NVIDIA H100 80GB HBM3 MIG 3g.40gb") == "3g.40gb"
    assert peaks.mig_profile("NVIDIA H100 80GB HBM3") is None


def test_grading_is_relative_to_typical():
    h100 = peaks.lookup("NVIDIA H100 80GB HBM3")
    assert peaks.grade(750, h100.tensor_tflops, h100.typical_tensor_fraction)[1] == "pass"
    assert peaks.grade(450, h100.tensor_tflops, h100.typical_tensor_fraction)[1] == "warn"
    assert peaks.grade(200, h100.tensor_tflops, h100.typical_tensor_fraction)[1] == "fail"
    t4 = peaks.lookup("Tesla T4")  # 26 TFLOP/s is 40 % of peak: normal for a 70 W card
    assert peaks.grade(26, t4.tensor_tflops, t4.typical_tensor_fraction)[1] == "pass"


def test_arch_rules():
    wheels = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    assert not diagnose.arch_supported("7.0", wheels)
    assert diagnose.arch_supported("8.9", ["sm_80", "sm_90"])  # sm_80 cubin runs on sm_89
    assert not diagnose.arch_supported("8.0", ["sm_86", "sm_90"])
    assert diagnose.arch_supported("10.0", ["sm_90", "compute_90"])  # PTX JITs forward
    assert diagnose.arch_supported("9.0", ["sm_90a"])
    assert diagnose.arch_supported("7.0", [])


def test_nvidia_smi_parsers():
    text = (
        "index, name, clocks.current.sm [MHz], clocks_event_reasons.active, power.limit [W]\n"
        "0, NVIDIA L4, 2040, 0x0000000000000004, [N/A]\n"
    )
    (row,) = nvsmi.parse_csv(text)
    assert row["clocks.sm"] == 2040 and row["power.limit"] is None
    assert nvsmi.throttle_reasons(row["clocks_throttle_reasons.active"]) == ["sw_power_cap"]
    assert nvsmi.parse_csv("No devices were found\n") == []
    header = nvsmi.parse_header(
        "| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0 |"
    )
    assert header == {"driver": "580.65.06", "cuda": "13.0"}
    table = (DATA / "diagnosis" / "fewer_gpus_fallen_off_bus" / "nvidia-smi.txt").read_text()
    assert nvsmi.count_gpus_in_listing(table) == 3
    busy = table + "|    0   N/A  N/A     4242      C   python                        21380MiB |\n"
    assert nvsmi.count_gpus_in_listing(busy) == 3
    assert nvsmi.count_gpus_in_listing("NVIDIA-SMI has failed because ...") is None
    xids = nvsmi.parse_xids("[1.0] NVRM: Xid (PCI:0000:00:1e): 79, pid=1, GPU has fallen off")
    assert xids[0]["xid"] == 79 and "bus" in xids[0]["meaning"]


CAPTURES = DATA / "captures"


@pytest.mark.parametrize(
    ("capture", "name", "driver", "cuda", "mem_mib", "max_sm_mhz", "power_w"),
    [
        ("h100-sxm-590.48.01", "NVIDIA H100 80GB HBM3", "590.48.01", "13.1", 81559, 1980, 700.0),
        ("h100-mig-590.48.01", "NVIDIA H100 80GB HBM3", "590.48.01", "13.1", 81559, 1980, 700.0),
        ("h200-590.48.01", "NVIDIA H200", "590.48.01", "13.1", 143771, 1980, 700.0),
        ("h200-mig-590.48.01", "NVIDIA H200", "590.48.01", "13.1", 143771, 1980, 700.0),
        ("l40s-595.80", "NVIDIA L40S", "595.80", "13.2", 46068, 2520, 350.0),
    ],
)
def test_parsers_on_real_captures(capture, name, driver, cuda, mem_mib, max_sm_mhz, power_w):
    """Real `--format=csv` output (units in every cell, 200+ columns, R535+ canonical names in
    the header) reads the same as the probe's `csv,nounits` would: numbers, not '81559 MiB'."""
    folder = CAPTURES / capture
    for state in ("idle", "load"):
        (row,) = nvsmi.parse_csv((folder / f"query-gpu-{state}.csv").read_text())
        assert row["name"] == name and row["driver_version"] == driver
        assert row["memory.total"] == mem_mib and isinstance(row["memory.used"], int)
        assert row["clocks.max.sm"] == max_sm_mhz and isinstance(row["clocks.sm"], int)
        assert row["power.limit"] == power_w == row["power.default_limit"]
        assert row["pcie.link.gen.current"] == row["pcie.link.gen.max"]
        assert row["ecc.errors.uncorrected.volatile.total"] == 0
        summary = nvsmi.gpu_summary(row)
        assert summary["memory_mib"] == mem_mib and summary["ecc_mode"] == "Enabled"
        assert set(summary["throttle"]) <= {"gpu_idle"}
        header = nvsmi.parse_header((folder / f"nvidia-smi-{state}.txt").read_text())
        assert header == {"driver": driver, "cuda": cuda}
        # one physical GPU: MIG device rows and process rows of the table are not GPUs
        assert nvsmi.count_gpus_in_listing((folder / f"nvidia-smi-{state}.txt").read_text()) == 1
    if "mig" in capture:
        assert row["mig.mode.current"] == "Enabled" and row["utilization.gpu"] is None
    apps = nvsmi.parse_csv((folder / "query-apps-load.csv").read_text())
    assert apps and all(isinstance(a["used_gpu_memory"], int) for a in apps)
    assert all(a["used_gpu_memory"] > 0 for a in apps)
    assert nvsmi.parse_csv((folder / "query-apps-idle.csv").read_text()) == []


def test_probe_asks_compute_apps_by_the_canonical_field_name():
    """`--help-query-compute-apps` (recorded in every capture): '"used_gpu_memory" or
    "used_memory"'; the header answers with the canonical name, which is what we read."""
    help_text = (CAPTURES / "h100-sxm-590.48.01" / "query-apps-load.csv").read_text()
    assert "used_gpu_memory [MiB]" in help_text.splitlines()[0]
    assert "used_gpu_memory" in nvsmi.query_apps_command()[1]


def test_matmul_check_catches_a_corrupted_element():
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    c = a @ b
    assert figures.check_matmul(a, b, c, "fp32", rows=256)["passed"]
    bad = c.clone()
    bad[17, 3] += 0.05 * c.abs().max()  # one wrong element, 5 % of the largest value
    result = figures.check_matmul(a, b, bad, "fp32", rows=256)
    assert not result["passed"] and result["max_rel_error"] > 1e-3
    half = a.bfloat16() @ b.bfloat16()
    assert figures.check_matmul(a.bfloat16(), b.bfloat16(), half, "bf16", rows=256)["passed"]


def test_cpu_figures_report_their_units():
    mm = figures.matmul(torch.device("cpu"), "fp32", 128, 0.05, check=True)
    assert mm["tflops"] > 0 and mm["check"]["passed"] and mm["n"] == 128
    bw = figures.bandwidth(torch.device("cpu"), 8 << 20, 0.05)
    assert bw["bytes_copied"] == 8 << 20 and bw["copy_verified"] and bw["gbps"] > 0.1


def test_nccl_bus_bandwidth_formula():
    assert figures.bus_bandwidth(100.0, 8) == pytest.approx(175.0)
    assert figures.bus_bandwidth(100.0, 2) == pytest.approx(100.0)


def test_phase_timeout_does_not_hang():
    release = threading.Event()
    result = run_phase("stuck", lambda: release.wait(60), timeout_s=0.3)
    # "timeout" means run_phase returned while the phase still ran (no clock needed to tell)
    assert result.status == "timeout" and not release.is_set()
    release.set()
    failed = run_phase("boom", lambda: 1 / 0, timeout_s=5)
    assert failed.status == "failed" and "ZeroDivisionError" in failed.error
    assert run_phase("fine", lambda: 42, timeout_s=5).value == 42


def test_precision_choice():
    cpu = torch.device("cpu")
    assert choose_precision(cpu) == ("fp32", False)
    assert choose_precision(cpu, "fp16") == ("fp16", True)
    assert choose_precision(cpu, "bf16") == ("bf16", False)
    assert choose_precision(cpu, "off") == ("fp32", False)


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_and_grad_scaler_paths_train(amp):
    """The GPU's AMP code paths (bf16 autocast; fp16 with GradScaler), exercised on CPU."""
    torch.set_num_threads(1)
    result = train(
        TrainConfig(
            amp=amp, image_size=12, width=8, batch_size=32, train_samples=768, epochs=2, workers=0
        )
    )
    assert result["precision"] == amp and result["grad_scaler"] == (amp == "fp16")
    assert math.isfinite(result["loss_after"])
    assert result["loss_after"] < 0.85 * result["loss_before"]  # it is learning


def test_fp32_figure_works_after_the_new_tf32_api_was_used():
    """torch 2.9+ raises on the legacy `allow_tf32` once anything in the process has used the
    new `fp32_precision` API (e.g. a training script setting 'tf32'); the FP32 figure must still
    run, with TF32 off inside and the caller's setting back afterwards. A fresh interpreter, so
    the process-wide switch of this test session stays untouched."""
    if not hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        pytest.skip("this torch predates the fp32_precision API")
    code = (
        "import torch\n"
        "torch.backends.cuda.matmul.fp32_precision = 'tf32'\n"
        "from dlenv_smoke import figures\n"
        "seen = []\n"
        "with figures.full_fp32_matmul():\n"
        "    seen.append(torch.backends.cuda.matmul.fp32_precision)\n"
        "mm = figures.matmul(torch.device('cpu'), 'fp32', 64, 0.01, check=True)\n"
        "assert mm['check']['passed'], mm\n"
        "print(seen[0], torch.backends.cuda.matmul.fp32_precision)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ieee", "tf32"]


def test_fp32_figure_uses_legacy_switches_only_on_a_torch_without_the_new_api(monkeypatch):
    legacy = types.SimpleNamespace(allow_tf32=True)  # an old torch: no fp32_precision attribute
    monkeypatch.setattr(torch.backends.cuda, "matmul", legacy)
    before = torch.get_float32_matmul_precision()
    with figures.full_fp32_matmul():
        assert legacy.allow_tf32 is False and torch.get_float32_matmul_precision() == "highest"
    assert legacy.allow_tf32 is True and torch.get_float32_matmul_precision() == before
