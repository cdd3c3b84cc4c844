"""The GPU instance catalog: what each type has, what it costs, which vCPU quota it draws on.

The shipped table (data/instance_types.json) carries its prices' date and region; `dlenv prices
--refresh` writes a per-region cache from the AWS Pricing API that takes precedence. Lookups run
before any AWS call, so a misspelled type fails fast with the closest valid names.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from dlenv.errors import UsageError

DATA = Path(__file__).parent / "data" / "instance_types.json"

MIN_COMPUTE_CAPABILITY = "7.5"
"""The oldest GPU the pinned stack runs on: Turing (T4, sm_75). CUDA 13.0 removed offline
compilation and library support for Maxwell, Pascal and Volta, PyTorch's cu130 wheels build
sm_75 and newer only, and the open kernel modules of the pinned 580 driver need a GPU System
Processor, which arrived with Turing: a V100 (sm_70) has no driver flavour, no CUDA and no
torch kernels in this stack."""


@dataclass(frozen=True)
class Quota:
    code: str
    name: str


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: float
    gpu: str
    gpu_count: int
    gpu_memory_gib: float
    compute_capability: str
    gpu_arch: str
    arch: str
    price_per_hour: float
    price_source: str

    @property
    def family(self) -> str:
        """Quota family: G-and-VT or P (the letter that selects the vCPU quota)."""
        return "P" if self.name.startswith("p") else "G"

    def quota(self, spot: bool) -> Quota:
        code, name = _raw()["quota_codes"][self.family]["spot" if spot else "on_demand"]
        return Quota(code, name)

    @property
    def gpu_summary(self) -> str:
        count = f"{self.gpu_count}x " if self.gpu_count > 1 else ""
        return f"{count}{self.gpu} {self.gpu_memory_gib:g} GB"

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "vcpus": self.vcpus,
            "memory_gib": self.memory_gib,
            "gpu": self.gpu,
            "gpu_count": self.gpu_count,
            "gpu_memory_gib": self.gpu_memory_gib,
            "compute_capability": self.compute_capability,
            "arch": self.arch,
            "price_per_hour": self.price_per_hour,
            "price_source": self.price_source,
            "quota_on_demand": self.quota(False).code,
            "quota_spot": self.quota(True).code,
        }


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    return json.loads(DATA.read_text())


def shipped_price_info() -> tuple[str, str]:
    """(date, region) of the shipped price table."""
    raw = _raw()
    return raw["prices_date"], raw["prices_region"]


def _cached_prices(region: str | None) -> tuple[dict[str, float], str] | None:
    if not region:
        return None
    from dlenv.cloud.pricing import load_cache

    cached = load_cache(region)
    if cached is None:
        return None
    return cached["prices"], f"AWS Pricing API {region} {cached['fetched']}"


def names() -> list[str]:
    """Type names by family, then size (g6e.2xlarge before g6e.12xlarge)."""
    types = _raw()["types"]
    return sorted(types, key=lambda n: (n.split(".")[0], types[n]["vcpus"], n))


def lookup(name: str, region: str | None = None) -> InstanceType:
    """The catalog entry for `name`, or a UsageError suggesting the closest valid names."""
    raw = _raw()
    entry = raw["types"].get(name)
    if entry is None:
        close = closest(name, list(raw["types"]))
        hint = (
            f"did you mean {' or '.join(close)}?"
            if close
            else "run `dlenv prices` to list the GPU instance types dlenv knows"
        )
        raise UsageError(f"unknown instance type {name!r}", hint)
    gpu = raw["gpus"][entry["gpu"]]
    price = entry["price_per_hour"]
    date, shipped_region = shipped_price_info()
    source = f"list price {shipped_region} {date}"
    cached = _cached_prices(region)
    if cached and name in cached[0]:
        price, source = cached[0][name], cached[1]
    return InstanceType(
        name=name,
        vcpus=entry["vcpus"],
        memory_gib=entry["memory_gib"],
        gpu=entry["gpu"],
        gpu_count=entry["gpu_count"],
        gpu_memory_gib=gpu["memory_gib"],
        compute_capability=gpu["compute_capability"],
        gpu_arch=gpu["arch"],
        arch=entry["arch"],
        price_per_hour=price,
        price_source=source,
    )


def closest(word: str, candidates: list[str]) -> list[str]:
    """The closest candidates: the best match, plus any almost as close (ties are ambiguous)."""
    scored = sorted(
        ((difflib.SequenceMatcher(None, word, c).ratio(), c) for c in candidates), reverse=True
    )
    if not scored or scored[0][0] < 0.6:
        return []
    best = scored[0][0]
    return [c for score, c in scored[:3] if score >= best - 0.03]


def all_types(region: str | None = None) -> list[InstanceType]:
    return [lookup(n, region) for n in names()]


def _cc_tuple(cc: str) -> tuple[int, int]:
    major, _, minor = cc.partition(".")
    return int(major), int(minor or 0)


def unsupported_reason(itype: InstanceType) -> str | None:
    """Why the pinned stack cannot run this type's GPU, or None when it can."""
    if _cc_tuple(itype.compute_capability) >= _cc_tuple(MIN_COMPUTE_CAPABILITY):
        return None
    return (
        f"{itype.name} is not supported: its {itype.gpu} ({itype.gpu_arch}, sm_"
        f"{itype.compute_capability.replace('.', '')}) is dropped by CUDA 13 and PyTorch's cu130 "
        "wheels, and the open kernel modules of the 580 driver do not drive it"
    )


def launchable(name: str, region: str | None = None) -> InstanceType:
    """`lookup` for a type about to be launched: refuses a GPU the stack cannot run, before any
    AWS call, instead of a launch that bills for hours and fails at the first CUDA kernel."""
    itype = lookup(name, region)
    reason = unsupported_reason(itype)
    if reason:
        raise UsageError(
            reason,
            "pick g4dn (T4, sm_75, the cheapest supported GPU), g5 (A10G) or g6 (L4) for one "
            "GPU, or p4d/p5 for 8 (`dlenv prices` lists them)",
        )
    return itype
