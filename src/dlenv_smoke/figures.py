"""Measured figures: dense matmul TFLOP/s, device memory bandwidth, NCCL all-reduce bandwidth.

Each figure is timed after a warm-up, over enough repetitions to fill a target time, so a
quick run gives a usable number and a full run a stable one. The last matmul of the timed loop
is checked against a float64 reference computed independently (a silent-corruption check, like
gpu-burn's comparison of results under load): a GPU that is fast but wrong must not pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
TOLERANCE = {"bf16": 2e-2, "fp16": 5e-3, "fp32": 1e-4}
"""Max |C - C_ref| / max |C_ref| allowed: rounding of the output format (bf16 has 8 mantissa
bits, fp16 11) plus accumulation error; a flipped exponent or mantissa bit lands far outside."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(
    fn: Callable[[], Any],
    device: torch.device,
    target_s: float,
    warmup: int = 2,
    max_reps: int = 10_000,
) -> tuple[float, int]:
    """(seconds per call, calls timed): warm up, estimate, then time enough calls for target_s."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    one = max(time.perf_counter() - t0, 1e-6)
    reps = int(min(max_reps, max(3, target_s / one)))
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / reps, reps


@contextmanager
def full_fp32_matmul() -> Iterator[None]:
    """FP32 matmuls on CUDA cores (TF32 off) inside the block, the caller's setting restored after.

    torch 2.9+ has the `fp32_precision` API ('ieee' | 'tf32' | 'none'); once anything in the
    process has set it, touching the legacy `torch.backends.cuda.matmul.allow_tf32` raises
    ("mix of the legacy and new APIs"), so the legacy switches serve only a torch without it.
    """
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        old = matmul.fp32_precision
        matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = old
        return
    old_tf32 = matmul.allow_tf32
    old_prec = torch.get_float32_matmul_precision()
    matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        matmul.allow_tf32 = old_tf32
        torch.set_float32_matmul_precision(old_prec)


def check_matmul(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, precision: str, rows: int = 64
) -> dict[str, Any]:
    """Compare `rows` random rows of c = a @ b with a float64 reference (silent corruption)."""
    g = torch.Generator().manual_seed(99)
    idx = torch.randperm(a.shape[0], generator=g)[:rows].to(a.device)
    ref = a[idx].double() @ b.double()
    got = c[idx].double()
    scale = ref.abs().max().clamp_min(1e-30)
    err = ((got - ref).abs().max() / scale).item()
    ok = err <= TOLERANCE[precision] and bool(torch.isfinite(got).all())
    return {
        "rows_checked": len(idx),
        "max_rel_error": err,
        "tolerance": TOLERANCE[precision],
        "passed": ok,
    }


def matmul(
    device: torch.device, precision: str, n: int, target_s: float, check: bool = False
) -> dict[str, Any]:
    """Dense n x n x n matmul throughput in TFLOP/s (2 n^3 FLOP per product).

    FP32 is measured with TF32 disabled, so it is the CUDA-core FP32 figure a datasheet lists.
    """
    dtype = _DTYPES[precision]
    g = (
        torch.Generator(device=device).manual_seed(5)
        if device.type == "cuda"
        else torch.Generator().manual_seed(5)
    )
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    c = torch.empty(n, n, device=device, dtype=dtype)
    if precision == "fp32":
        with full_fp32_matmul():
            seconds, reps = _timed(lambda: torch.matmul(a, b, out=c), device, target_s)
    else:
        seconds, reps = _timed(lambda: torch.matmul(a, b, out=c), device, target_s)
    result: dict[str, Any] = {
        "precision": precision,
        "n": n,
        "reps": reps,
        "tflops": 2 * n**3 / seconds / 1e12,
    }
    if check:
        result["check"] = check_matmul(a, b, c, precision)
    return result


def bandwidth(device: torch.device, nbytes: int, target_s: float) -> dict[str, Any]:
    """Memory bandwidth of a device-to-device copy in GB/s, counting bytes read + written."""
    n = nbytes // 4
    src = torch.ones(n, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    seconds, reps = _timed(lambda: dst.copy_(src), device, target_s)
    ok = bool(dst[:: max(1, n // 4096)].eq(1).all())
    return {
        "bytes_copied": n * 4,
        "reps": reps,
        "gbps": 2 * n * 4 / seconds / 1e9,
        "copy_verified": ok,
    }


def bus_bandwidth(algbw_gbps: float, ranks: int) -> float:
    """NCCL-tests' 'bus bandwidth' of an all-reduce: algbw * 2 (n-1) / n, comparable to link
    speed whatever the number of GPUs."""
    return algbw_gbps * 2 * (ranks - 1) / ranks


def allreduce(devices: list[torch.device], nbytes: int, target_s: float) -> dict[str, Any]:
    """Time a single-process NCCL all-reduce across every visible GPU and verify its sum.

    torch.cuda.nccl drives one communicator over all local GPUs from one process, so the check
    needs no process spawning or rendezvous (which would cost seconds of the budget).
    """
    from torch.cuda import nccl

    n = nbytes // 4
    tensors = [torch.full((n,), float(i + 1), device=d) for i, d in enumerate(devices)]
    expected = len(devices) * (len(devices) + 1) / 2

    def once() -> None:
        nccl.all_reduce(tensors)

    once()  # builds the communicator
    for d in devices:
        torch.cuda.synchronize(d)
    for i, t in enumerate(tensors):  # reset, then one verified reduction
        t.fill_(float(i + 1))
    once()
    for d in devices:
        torch.cuda.synchronize(d)
    ok = all(bool(t[:: max(1, n // 1024)].eq(expected).all()) for t in tensors)
    reps = 0
    t0 = time.perf_counter()
    while True:
        once()
        reps += 1
        if reps % 5 == 0:
            for d in devices:
                torch.cuda.synchronize(d)
            if time.perf_counter() - t0 >= target_s:
                break
    seconds = (time.perf_counter() - t0) / reps
    algbw = n * 4 / seconds / 1e9
    return {
        "gpus": len(devices),
        "bytes": n * 4,
        "reps": reps,
        "algbw_gbps": algbw,
        "busbw_gbps": bus_bandwidth(algbw, len(devices)),
        "sum_verified": ok,
    }
