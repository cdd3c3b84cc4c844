"""Datasheet peaks of the GPUs dlenv runs on, and how a measured figure is graded against them.

A figure only means something beside the physical limit of the chip, and a fraction of peak
only means something beside what well-tuned PyTorch typically reaches on that chip: cuBLAS gets
about 75-80 % of dense bf16 peak on an A100/H100, but a 70 W T4 or 72 W L4 hits its power cap
long before its tensor cores saturate. So each row carries the datasheet peak *and* the typical
reachable fraction, and grading is relative to the latter.

Units are part of the names: TFLOP/s (1e12 floating point operations per second, dense, i.e.
without the 2:4 sparsity that datasheets like to double), GB/s (1e9 bytes per second), MHz, W.
The SM count and boost clock are kept so a test can recompute each FP32 peak from first
principles and catch a unit slip (GB vs GiB, sparse vs dense, MHz vs GHz).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuPeak:
    key: str
    match: tuple[str, ...]
    """Lower-case words that all must appear in torch's / nvidia-smi's device name."""
    compute_capability: tuple[int, int]
    sm_count: int
    boost_clock_mhz: int
    fp32_cores_per_sm: int
    fp32_tflops: float
    """Dense FP32 on CUDA cores (what a matmul with TF32 disabled can reach)."""
    tensor_tflops: float
    """Dense tensor-core peak in the GPU's best real low precision: bf16 from CC 8.0, else fp16."""
    mem_gbps: float
    tdp_w: int
    typical_tensor_fraction: float
    """Fraction of `tensor_tflops` that a well-tuned large PyTorch matmul typically reaches."""
    typical_fp32_fraction: float
    typical_mem_fraction: float
    """Fraction of `mem_gbps` a device-to-device copy typically reaches."""

    @property
    def tensor_dtype(self) -> str:
        return "bf16" if self.compute_capability >= (8, 0) else "fp16"


# Dense datasheet figures (NVIDIA product briefs); typical fractions are what large cuBLAS
# GEMMs / torch copies reach in practice, deliberately a little conservative.
PEAKS: tuple[GpuPeak, ...] = (
    GpuPeak("T4", ("t4",), (7, 5), 40, 1590, 64, 8.1, 65.0, 320.0, 70, 0.40, 0.50, 0.75),
    # A10G: AWS's own GA102, not the A10: a real g5 reports 80 SMs (torch's
    # multi_processor_count=80), not the A10's 72, and its tensor cores run bf16/fp16 with FP32
    # accumulation at half the A10's rate per SM (70 TFLOP/s dense at 1710 MHz, against the A10's
    # 125), the GeForce-style rate; its CUDA-core FP32 is higher (35 TFLOP/s).
    GpuPeak("A10G", ("a10g",), (8, 6), 80, 1710, 128, 35.0, 70.0, 600.0, 300, 0.70, 0.55, 0.80),
    GpuPeak("L40S", ("l40s",), (8, 9), 142, 2520, 128, 91.6, 362.0, 864.0, 350, 0.55, 0.55, 0.80),
    GpuPeak("L4", ("l4",), (8, 9), 58, 2040, 128, 30.3, 121.0, 300.0, 72, 0.40, 0.50, 0.80),
    GpuPeak("V100", ("v100",), (7, 0), 80, 1530, 64, 15.7, 125.0, 900.0, 300, 0.70, 0.85, 0.85),
    GpuPeak(
        "A100-40GB",
        ("a100", "40gb"),
        (8, 0),
        108,
        1410,
        64,
        19.5,
        312.0,
        1555.0,
        400,
        0.80,
        0.90,
        0.85,
    ),
    GpuPeak(
        "A100-80GB",
        ("a100", "80gb"),
        (8, 0),
        108,
        1410,
        64,
        19.5,
        312.0,
        2039.0,
        400,
        0.80,
        0.90,
        0.85,
    ),
    GpuPeak(
        "H100-PCIe",
        ("h100", "pcie"),
        (9, 0),
        114,
        1755,
        128,
        51.2,
        756.0,
        2000.0,
        350,
        0.65,
        0.70,
        0.85,
    ),
    GpuPeak(
        "H100-NVL",
        ("h100", "nvl"),
        (9, 0),
        132,
        1785,
        128,
        60.0,
        835.0,
        3900.0,
        400,
        0.70,
        0.75,
        0.85,
    ),
    GpuPeak(
        "H100-SXM", ("h100",), (9, 0), 132, 1980, 128, 66.9, 989.4, 3350.0, 700, 0.75, 0.75, 0.85
    ),
    GpuPeak("H200", ("h200",), (9, 0), 132, 1980, 128, 66.9, 989.4, 4800.0, 700, 0.75, 0.75, 0.85),
)
"""Ordered so that the more specific row wins: "H100 PCIe"/"H100 NVL" before plain "H100" (SXM)."""

PASS_OF_TYPICAL = 0.80
"""A figure passes at >= 80 % of what is typical for the GPU ..."""
WARN_OF_TYPICAL = 0.50
"""... warns between 50 % and 80 %, and fails below half of typical (something is wrong:
throttling, a degraded link, another job on the GPU)."""


def mig_profile(device_name: str) -> str | None:
    """The MIG profile ('3g.40gb') of a MIG device name, None for a whole GPU.

    CUDA names a MIG instance after its parent plus the profile ('NVIDIA H100 80GB HBM3 MIG
    3g.40gb'), and a CUDA process sees at most one such instance.
    """
    match = re.search(r"\bMIG\s+(\d+g\.\d+gb\S*)", device_name, flags=re.I)
    return match.group(1) if match else None


def lookup(device_name: str) -> GpuPeak | None:
    """The table row for a device name such as 'NVIDIA H100 80GB HBM3' (None if unknown).

    A MIG slice gets None: its SMs, memory bandwidth and copy engines are a fraction of the
    full GPU's set by its profile, so the full GPU's datasheet peak would grade it a failure.
    """
    if mig_profile(device_name):
        return None
    words = set(re.split(r"[^a-z0-9]+", device_name.lower()))
    for peak in PEAKS:
        if all(part in words for part in peak.match):
            return peak
    return None


def grade(measured: float, peak: float, typical_fraction: float) -> tuple[float, str]:
    """(fraction of peak, 'pass'|'warn'|'fail') for a measured figure in the peak's unit."""
    if peak <= 0:
        raise ValueError("peak must be positive")
    fraction = measured / peak
    relative = fraction / typical_fraction
    if relative >= PASS_OF_TYPICAL:
        return fraction, "pass"
    if relative >= WARN_OF_TYPICAL:
        return fraction, "warn"
    return fraction, "fail"
