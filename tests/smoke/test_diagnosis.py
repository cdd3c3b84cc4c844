"""The diagnosis rules against recorded observations: one folder per case, no code per case.

Each folder under data/diagnosis holds `observations.json` (what the probes recorded: command
outputs, torch's messages, nvidia-smi readings before/during/after load, /dev/shm, env vars)
and `expected.json` ({finding code: severity}, exactly the findings that must appear). A string
value "@file:NAME" in the observations is replaced by that file's text, so raw outputs stay
readable next to the case. To add a case, add a folder; to record one on a real machine, save
the `observations` object of its `python -m dlenv_smoke --json` report as observations.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlenv_smoke import diagnose
from dlenv_smoke.job import environment
from smoke.smokejob import DATA, load_case

CASES = sorted(p for p in (DATA / "diagnosis").iterdir() if p.is_dir())


@pytest.mark.parametrize("folder", CASES, ids=[c.name for c in CASES])
def test_case(folder: Path):
    obs = load_case(folder)
    expected = json.loads((folder / "expected.json").read_text())
    findings = diagnose.diagnose(obs)
    assert {f.code: f.severity for f in findings} == expected
    for f in findings:
        assert f.severity in diagnose.SEVERITIES
        assert f.message.endswith(".") and f.fix.strip(), f
        assert "\n" not in f.message and len(f.message) < 400
    environment(obs)  # the report's environment section renders from any recorded case


def test_every_rule_is_exercised_by_some_case():
    seen = set()
    for folder in CASES:
        seen |= set(json.loads((folder / "expected.json").read_text()))
    codes_in_rules = {
        "torch_missing",
        "container_no_gpu",
        "no_nvidia_device",
        "driver_not_loaded",
        "driver_library_mismatch",
        "cuda_not_ready",
        "driver_too_old",
        "cpu_only_torch",
        "arch_missing",
        "shm_too_small",
        "cudnn_unavailable",
        "fewer_gpus",
        "out_of_memory",
        "gpu_busy",
        "ecc_errors",
        "xid_errors",
        "throttling",
        "power_limit_lowered",
        "power_capped",
        "pcie_below_max",
    }
    assert codes_in_rules <= seen, codes_in_rules - seen
    assert len(diagnose.RULES) == 19


def test_findings_are_sorted_most_severe_first():
    obs = load_case(DATA / "diagnosis" / "out_of_memory_other_process")
    severities = [f.severity for f in diagnose.diagnose(obs)]
    assert severities == sorted(severities, key=diagnose.SEVERITIES.index)


def test_messages_name_the_specifics():
    by_case = {c.name: diagnose.diagnose(load_case(c)) for c in CASES}
    arch = by_case["v100_arch_missing"][0]
    assert "sm_70" in arch.message and "Tesla V100-SXM2-16GB" in arch.message
    old = by_case["driver_too_old_by_header"][0]
    assert "470.256.02" in old.message and "11.4" in old.message and "12.8" in old.message
    pcie = by_case["pcie_degraded_under_load"][0]
    assert "Gen3 x8" in pcie.message and "Gen4 x16" in pcie.message
    # a real capture: `used_memory` comes back under its canonical header `used_gpu_memory [MiB]`
    busy = by_case["gpu_busy_other_processes"][0]
    assert "3 other processes" in busy.message and "19798 MiB" in busy.message, busy
    assert "./gpu_burn" in busy.message and "/root/tools/memhog" in busy.message
    fm = by_case["cuda_error_802_no_fabric_manager"][0]
    assert "nvidia-smi lists 1 GPU but" in fm.message and "Fabric Manager" in fm.message
    assert "sudo systemctl enable --now nvidia-fabricmanager" in fm.fix
    assert "dlenv provision NAME" in fm.fix
    shm = by_case["container_small_shm"][0]
    assert "64 MiB" in shm.message and "--shm-size" in shm.fix
    fewer = {f.code: f for f in by_case["fewer_gpus_fallen_off_bus"]}
    assert "3 GPUs" in fewer["fewer_gpus"].message and "Xid 79" in fewer["fewer_gpus"].fix
    assert "fallen off the bus" in fewer["xid_errors"].message
    cvd = by_case["fewer_gpus_cuda_visible_devices"][0]
    assert "CUDA_VISIBLE_DEVICES=0" in cvd.fix
    cap = by_case["t4_power_cap_is_normal"][0]
    assert "70 W" in cap.message and "normal" in cap.message
