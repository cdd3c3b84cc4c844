"""The smoke test's readers on real captures of the driver branch dlenv pins (580).

The exporter's full captures (data/captures/README.md) are of branches 590 and 595; these two
tables are an H200 on 580.173.02 and a g5's A10G on 580.95.05, both CUDA 13.0: the driver
`dlenv provision` installs for the cu130 wheels.
"""

from __future__ import annotations

import pytest

from dlenv_smoke import diagnose, nvsmi, peaks
from smoke.smokejob import DATA

CAPTURE = DATA / "captures" / "h200-580.173.02"


@pytest.mark.parametrize(
    ("folder", "driver", "gpu", "peak"),
    [
        ("h200-580.173.02", "580.173.02", "NVIDIA H200", "H200"),
        ("a10g-g5-580.95.05", "580.95.05", "NVIDIA A10G", "A10G"),
    ],
)
def test_the_header_and_listing_of_a_real_branch_580_table(
    folder: str, driver: str, gpu: str, peak: str
) -> None:
    table = (DATA / "captures" / folder / "nvidia-smi-idle.txt").read_text()
    assert nvsmi.parse_header(table) == {"driver": driver, "cuda": "13.0"}
    assert nvsmi.count_gpus_in_listing(table) == 1
    assert f"|   0  {gpu} " in table
    found = peaks.lookup(gpu)
    assert found is not None and found.key.startswith(peak)
    listing = (CAPTURE / "list.txt").read_text()
    assert listing.startswith("GPU 0: NVIDIA H200 (UUID: GPU-")


def test_a_branch_580_driver_is_not_too_old_for_cu130_but_is_for_a_next_major() -> None:
    """Minor-version compatibility: 580 (CUDA 13.0) runs every 13.x wheel; a CUDA 14 build
    would need a newer branch, and the finding names the real driver and its CUDA."""
    table = (CAPTURE / "nvidia-smi-idle.txt").read_text()
    for cuda in ("13.0", "13.2"):
        obs = {"nvidia_smi": {"rc": 0, "out": table}, "torch": {"cuda": cuda}}
        assert diagnose.driver_too_old(obs) is None
    finding = diagnose.driver_too_old(
        {"nvidia_smi": {"rc": 0, "out": table}, "torch": {"cuda": "14.0"}}
    )
    assert finding is not None and finding.code == "driver_too_old"
    assert "580.173.02" in finding.message and "supports CUDA up to 13.0" in finding.message
