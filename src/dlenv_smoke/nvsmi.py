"""Reading nvidia-smi: the commands to run and pure parsers of their text.

nvidia-smi is the one tool present wherever the NVIDIA driver is (hosts and `--gpus` containers
alike), and its CSV query interface is stable across driver branches, so it stands in for NVML
without a Python binding. Commands are run by `probe`; everything here is a pure function of the
recorded text, so the diagnosis tests replay real outputs captured on broken machines.
"""

from __future__ import annotations

import re
from typing import Any

CORE_FIELDS = (
    "index",
    "name",
    "pci.bus_id",
    "driver_version",
    "memory.total",
    "memory.used",
    "compute_cap",
    "utilization.gpu",
    "temperature.gpu",
    "power.draw",
    "power.limit",
    "power.default_limit",
    "power.max_limit",
    "clocks.sm",
    "clocks.max.sm",
    "clocks.mem",
    "clocks.max.mem",
    "pcie.link.gen.current",
    "pcie.link.gen.max",
    "pcie.link.width.current",
    "pcie.link.width.max",
    "clocks_throttle_reasons.active",
    "ecc.mode.current",
    "ecc.errors.uncorrected.volatile.total",
    "ecc.errors.corrected.volatile.total",
)
OPTIONAL_FIELDS = ("remapped_rows.pending", "remapped_rows.failure")
"""Fields older drivers reject ('not a valid field'); the probe retries without them."""

APPS_FIELDS = ("pid", "process_name", "used_gpu_memory")
"""Canonical names: `--help-query-compute-apps` lists `"used_gpu_memory" or "used_memory"`, and
the CSV header always carries the canonical `used_gpu_memory [MiB]` whichever was asked for."""

ALIASES = {
    "clocks.current.sm": "clocks.sm",
    "clocks.current.memory": "clocks.mem",
    "clocks.max.memory": "clocks.max.mem",
    "clocks_event_reasons.active": "clocks_throttle_reasons.active",
}
"""nvidia-smi echoes the canonical name in the CSV header, not the alias that was queried
(`clocks.sm` comes back as `clocks.current.sm`; R535+ renamed throttle to event reasons)."""

TEXT_FIELDS = frozenset(
    {"name", "pci.bus_id", "driver_version", "compute_cap", "vbios_version", "process_name"}
)
"""Fields kept as text even when they look like numbers: a real L40S capture reports driver
`595.80`, which a float would turn into 595.8, and a compute capability is not a decimal."""

THROTTLE_BITS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
HARMFUL_THROTTLES = frozenset(
    {"hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}
)
"""Reasons that mean the GPU cannot hold its clocks. A software power cap is not among them:
power-capped cards (T4 at 70 W, L4 at 72 W) sit at their cap under any real load by design."""

XID_MEANINGS = {
    13: "graphics engine exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "preemptive cleanup",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping event",
    64: "ECC page retirement or row remapping failure",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
}
BENIGN_XIDS = frozenset({13, 31, 43, 45})
"""Xids an application bug (a bad kernel, a killed process) also produces: reported, not blamed
on the hardware unless they appear during our own run."""


def query_gpu_command(fields: tuple[str, ...] = CORE_FIELDS + OPTIONAL_FIELDS) -> list[str]:
    return ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,nounits"]


def query_apps_command() -> list[str]:
    return ["nvidia-smi", f"--query-compute-apps={','.join(APPS_FIELDS)}", "--format=csv,nounits"]


def _value(text: str, unit: str | None = None, field: str = "") -> Any:
    text = text.strip()
    if not text or text.startswith("[") or text in {"N/A", "Not Supported"}:
        return None  # "[N/A]", "[Not Supported]", "[Unknown Error]", "[Insufficient Permissions]"
    if field in TEXT_FIELDS:
        return text
    if unit and text.endswith(f" {unit}"):
        text = text[: -len(unit) - 1]  # `--format=csv` without nounits: "81559 MiB", "700.00 W"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_csv(text: str | None) -> list[dict[str, Any]]:
    """Rows of `nvidia-smi --query-* --format=csv[,nounits]` keyed by field name, units dropped.

    The header is kept (no `noheader`) so recorded outputs are self-describing and a field a
    driver silently renamed cannot be read under the wrong name. Its `[MiB]`-style unit is also
    stripped from the values, so plain `--format=csv` output (what most published captures and
    bug reports hold) parses to the same numbers as the probe's `csv,nounits`.
    """
    if not text:
        return []
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) < 2:
        return []
    names, units = [], []
    for raw in lines[0].split(","):
        field, _, unit = raw.strip().partition(" [")  # "memory.total [MiB]"
        names.append(ALIASES.get(field.strip(), field.strip()))
        units.append(unit.rstrip("]").strip() or None)
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(names):
            continue  # an error line ("No devices were found") or a name with a comma
        rows.append({h: _value(c, u, h) for h, c, u in zip(names, cells, units, strict=True)})
    return rows


def parse_header(text: str | None) -> dict[str, str | None]:
    """Driver and driver-CUDA versions from plain `nvidia-smi` output."""
    text = text or ""
    driver = re.search(r"Driver Version:\s*([0-9][0-9.]*)", text)
    cuda = re.search(r"CUDA Version:\s*([0-9][0-9.]*)", text)
    return {"driver": driver.group(1) if driver else None, "cuda": cuda.group(1) if cuda else None}


def count_gpus_in_listing(text: str | None) -> int | None:
    """GPUs in the plain `nvidia-smi` table: rows with an index and a PCI bus id
    ('|   0  NVIDIA A10G   On  |   00000000:1E:00.0 Off |'), not the process rows."""
    if not text or "Driver Version" not in text:
        return None
    rows = re.findall(
        r"^\|\s+\d+\s+\S.*\|\s+[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d", text, flags=re.M
    )
    return len(rows) or None


def throttle_reasons(mask: Any) -> list[str]:
    """Names of the active clock-throttle bits in a value like '0x0000000000000004'."""
    if mask is None:
        return []
    try:
        value = int(str(mask), 16) if isinstance(mask, str) else int(mask)
    except ValueError:
        return []
    return [name for bit, name in THROTTLE_BITS.items() if value & bit]


def parse_xids(kernel_log: str | None) -> list[dict[str, Any]]:
    """Xid events in a kernel log ('NVRM: Xid (PCI:0000:00:1e): 79, pid=..., GPU has fallen...')."""
    events = []
    for match in re.finditer(r"NVRM: Xid \(([^)]*)\):\s*(\d+)", kernel_log or ""):
        code = int(match.group(2))
        events.append(
            {
                "pci": match.group(1),
                "xid": code,
                "meaning": XID_MEANINGS.get(code, "see NVIDIA's Xid catalog"),
            }
        )
    return events


def gpu_summary(row: dict[str, Any]) -> dict[str, Any]:
    """The facts of one query-gpu row that the report prints, with readable names."""
    return {
        "name": row.get("name"),
        "memory_mib": row.get("memory.total"),
        "compute_capability": row.get("compute_cap"),
        "driver": row.get("driver_version"),
        "sm_clock_mhz": row.get("clocks.sm"),
        "sm_clock_max_mhz": row.get("clocks.max.sm"),
        "power_limit_w": row.get("power.limit"),
        "power_default_limit_w": row.get("power.default_limit"),
        "ecc_mode": row.get("ecc.mode.current"),
        "ecc_uncorrected": row.get("ecc.errors.uncorrected.volatile.total"),
        "ecc_corrected": row.get("ecc.errors.corrected.volatile.total"),
        "remapped_rows_pending": row.get("remapped_rows.pending"),
        "remapped_rows_failure": row.get("remapped_rows.failure"),
        "pcie": {
            "gen": row.get("pcie.link.gen.current"),
            "gen_max": row.get("pcie.link.gen.max"),
            "width": row.get("pcie.link.width.current"),
            "width_max": row.get("pcie.link.width.max"),
        },
        "throttle": throttle_reasons(row.get("clocks_throttle_reasons.active")),
    }
