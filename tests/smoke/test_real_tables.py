"""Every recorded `nvidia-smi` table against what real ones show (issue 17 item 8).

Real captures (data/captures/README.md) fix three facts the hand-written tables got wrong or could
get wrong: which CUDA version a driver branch reports in the header (a 550 driver prints 12.4,
never 12.8), the table's width (91 columns on every line), and each GPU's power cap, which the
peak table's TDP must match.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dlenv_smoke import nvsmi, peaks
from smoke.smokejob import DATA

# The CUDA version each driver branch prints in nvidia-smi's header, as real outputs show it:
# 535.86.05 / 535.129.03, 550.90.07 / 550.54.15 and 570.195.03 (g5 A10G tables in public AWS and
# EKS guides), 580.95.05 and 580.173.02 (captures/a10g-g5-580.95.05, captures/h200-580.173.02),
# 590.48.01 and 595.80 (the exporter's captures); 470 from the CUDA release notes' driver table
# (CUDA 11.4 needs 470.42.01, 11.5 needs 495).
BRANCH_CUDA = {
    "470": "11.4",
    "535": "12.2",
    "550": "12.4",
    "570": "12.8",
    "580": "13.0",
    "590": "13.1",
    "595": "13.2",
}

TABLES = sorted(DATA.glob("captures/*/nvidia-smi-*.txt")) + sorted(
    DATA.glob("diagnosis/*/nvidia-smi.txt")
)
GPU_ROW = re.compile(r"^\|\s+\d+\s+(NVIDIA [^|]*?)\s+(?:On|Off)\s+\|")
POWER = re.compile(r"\b\d+W\s*/\s*(\d+)W\s*\|")


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.mark.parametrize("table", TABLES, ids=[_id(t) for t in TABLES])
def test_the_header_pairs_a_driver_with_the_cuda_its_branch_reports(table: Path) -> None:
    header = nvsmi.parse_header(table.read_text())
    if header["driver"] is None:  # a failure text (no driver, library mismatch): no header
        assert "NVIDIA-SMI has failed" in table.read_text() or "Failed" in table.read_text()
        return
    branch = header["driver"].split(".")[0]
    assert header["cuda"] == BRANCH_CUDA[branch], (
        f"driver {header['driver']} prints CUDA Version: {BRANCH_CUDA[branch]}"
    )


FRAMED = [t for t in TABLES if "+---" in t.read_text()]


@pytest.mark.parametrize("table", FRAMED, ids=[_id(t) for t in FRAMED])
def test_every_line_of_a_table_is_as_wide_as_its_frame(table: Path) -> None:
    """Real tables (drivers 545 and later) are 91 columns on every line; the hand-written ones
    had power and memory cells a column short, which no driver prints."""
    lines = table.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("+---"))
    width = len(lines[start])
    assert width == 91
    assert [ln for ln in lines[start:] if ln and len(ln) != width] == []


REAL = sorted(DATA.glob("captures/*/nvidia-smi-idle.txt"))


@pytest.mark.parametrize("table", REAL, ids=[_id(t) for t in REAL])
def test_the_peak_tables_tdp_is_the_power_cap_a_real_gpu_reports(table: Path) -> None:
    """Idle, unmodified machines: the cap the table shows is the board's default limit."""
    lines = table.read_text().splitlines()
    rows = [(i, m.group(1)) for i, ln in enumerate(lines) if (m := GPU_ROW.match(ln))]
    assert rows, "no GPU row in a real table"
    for i, name in rows:
        peak = peaks.lookup(name)
        assert peak is not None, name
        cap = POWER.search(lines[i + 1])
        assert cap is not None, lines[i + 1]
        assert peak.tdp_w == int(cap.group(1)), (name, peak.key)
