"""Load `provision/stack.toml` and compute the stack fingerprint.

The fingerprint hashes the manifest's parsed data as canonical JSON (sorted keys, no whitespace),
so reformatting or commenting the TOML never changes it, while any pin change does. It is short
(12 hex digits) because it goes into EC2 tags, image labels and AMI names.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from dlenv.errors import ProvisionError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FINGERPRINT_LEN = 12


def provision_dir() -> Path:
    """The shipped `provision/` tree (a checkout's top-level folder or the wheel's package data)."""
    from dlenv.paths import data_dir

    return data_dir() / "provision"


def canonical_fingerprint(data: dict[str, Any]) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:FINGERPRINT_LEN]


@dataclass(frozen=True)
class Stack:
    """The parsed manifest. `data` is the raw table; the properties are the pins code uses."""

    data: dict[str, Any]
    path: Path | None = field(default=None, compare=False)

    @cached_property
    def fingerprint(self) -> str:
        return canonical_fingerprint(self.data)

    def get(self, dotted: str) -> Any:
        """`stack.get("packages.torch")`: a value by its dotted path (KeyError names the path)."""
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"stack manifest has no {dotted!r}")
            node = node[part]
        return node

    @property
    def supported_os(self) -> list[str]:
        return list(self.data["os"]["supported"])

    @property
    def packages(self) -> dict[str, str]:
        return dict(self.data["packages"])

    def conda_dist(self, name: str) -> dict[str, Any]:
        dists = self.data["conda"]["dist"]
        if name not in dists:
            raise ProvisionError(
                f"unknown conda distribution {name!r}", f"choose one of: {', '.join(sorted(dists))}"
            )
        return dict(dists[name])

    def versions(self) -> dict[str, str]:
        """The headline pins, e.g. for `dlenv provision --plan` and image labels."""
        return {
            "nvidia-driver": self.data["nvidia"]["driver_branch"],
            "cuda": self.data["cuda"]["version"],
            "python": self.data["python"]["version"],
            "uv": self.data["uv"]["version"],
            **self.packages,
        }


_REQUIRED = (
    "os",
    "nvidia",
    "cuda",
    "python",
    "conda",
    "uv",
    "packages",
    "torch",
    "jupyter",
    "idle",
    "scientific",
)


def load_stack(path: Path | str | None = None) -> Stack:
    """Read and validate the manifest (default: the shipped `provision/stack.toml`)."""
    manifest = Path(path) if path else provision_dir() / "stack.toml"
    try:
        data = tomllib.loads(manifest.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProvisionError(f"cannot read the stack manifest {manifest}: {exc}") from None
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise ProvisionError(f"stack manifest {manifest} lacks: {', '.join(missing)}")
    for name, dist in data["conda"]["dist"].items():
        sha = str(dist.get("sha256", ""))
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ProvisionError(
                f"stack manifest: conda.dist.{name}.sha256 is not a sha256 hex digest"
            )
    return Stack(data=data, path=manifest)
