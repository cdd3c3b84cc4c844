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
    efa_interfaces: int = 0
    """Most EFA interfaces the type takes (0: no EFA); see EFA_INTERFACES."""
    network_gbps: float | None = None
    """The type's published network bandwidth in Gbps (EFA's on p4d/p5); see NETWORK_GBPS."""

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


EFA_INTERFACES = {
    **dict.fromkeys(("g4dn.8xlarge", "g4dn.12xlarge", "g4dn.16xlarge", "g4dn.metal"), 1),
    **dict.fromkeys(("g5.8xlarge", "g5.12xlarge", "g5.16xlarge", "g5.24xlarge", "g5.48xlarge"), 1),
    **dict.fromkeys(("g6.8xlarge", "g6.12xlarge", "g6.16xlarge", "g6.24xlarge", "g6.48xlarge"), 1),
    **dict.fromkeys(("g6e.8xlarge", "g6e.12xlarge", "g6e.16xlarge"), 1),
    "g6e.24xlarge": 2,
    "g6e.48xlarge": 4,
    "p3dn.24xlarge": 1,
    "p4d.24xlarge": 4,
    "p4de.24xlarge": 4,
    "p5.48xlarge": 32,
    "p5e.48xlarge": 32,
    "p5en.48xlarge": 16,
}
"""Types of the catalog that support EFA, with their maximum EFA interfaces (the EC2 user
guide's "Supported instance types" for EFA, and DescribeInstanceTypes' EfaInfo
MaximumEfaInterfaces). The smaller sizes of g4dn/g5/g6/g6e, p3 and g5g have no EFA."""


NETWORK_GBPS = {
    **dict.fromkeys(("g4dn.xlarge", "g4dn.2xlarge", "g4dn.4xlarge"), 25.0),
    **dict.fromkeys(("g4dn.8xlarge", "g4dn.12xlarge", "g4dn.16xlarge"), 50.0),
    "g4dn.metal": 100.0,
    **dict.fromkeys(("g5.xlarge", "g5.2xlarge"), 10.0),
    **dict.fromkeys(("g5.4xlarge", "g5.8xlarge", "g5.16xlarge"), 25.0),
    "g5.12xlarge": 40.0,
    "g5.24xlarge": 50.0,
    "g5.48xlarge": 100.0,
    **dict.fromkeys(("g5g.xlarge", "g5g.2xlarge", "g5g.4xlarge"), 10.0),
    "g5g.8xlarge": 12.0,
    "g5g.16xlarge": 25.0,
    **dict.fromkeys(("g6.xlarge", "g6.2xlarge"), 10.0),
    **dict.fromkeys(("g6.4xlarge", "g6.8xlarge", "g6.16xlarge"), 25.0),
    "g6.12xlarge": 40.0,
    "g6.24xlarge": 50.0,
    "g6.48xlarge": 100.0,
    **dict.fromkeys(("g6e.xlarge", "g6e.2xlarge", "g6e.4xlarge"), 20.0),
    "g6e.8xlarge": 25.0,
    "g6e.16xlarge": 35.0,
    "g6e.12xlarge": 100.0,
    "g6e.24xlarge": 200.0,
    "g6e.48xlarge": 400.0,
    **dict.fromkeys(("p3.2xlarge", "p3.8xlarge"), 10.0),
    "p3.16xlarge": 25.0,
    "p3dn.24xlarge": 100.0,
    **dict.fromkeys(("p4d.24xlarge", "p4de.24xlarge"), 400.0),
    "p5.4xlarge": 100.0,
    **dict.fromkeys(("p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge"), 3200.0),
}
"""Published network bandwidth per type in Gbps (EC2's accelerated computing specifications;
"up to" figures of the small sizes are their burst peak): what `dlenv smoke-test NAME --nodes`
grades the measured all-reduce bus bandwidth against."""


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text())
    return data


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
        efa_interfaces=EFA_INTERFACES.get(name, 0),
        network_gbps=NETWORK_GBPS.get(name),
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
