"""Run each phase of the job under a hard time limit, so the job can never hang.

A phase runs in a daemon thread and the main thread waits for it with a timeout. A CUDA call
stuck in the driver cannot be interrupted from Python, so on a timeout the phase is abandoned:
the job reports it as timed out, skips what is left (the GPU is presumably wedged) and exits
with os._exit so that interpreter shutdown does not wait for the stuck thread either.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PhaseResult:
    name: str
    status: str  # ok | failed | timeout | skipped
    seconds: float = 0.0
    timeout_s: float = 0.0
    value: Any = None
    error: str | None = None
    traceback: str | None = field(default=None, repr=False)


def run_phase(name: str, fn: Callable[[], Any], timeout_s: float) -> PhaseResult:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # reported, never swallowed silently
            box["error"] = f"{type(exc).__name__}: {exc}"
            box["traceback"] = traceback.format_exc()

    start = time.monotonic()
    thread = threading.Thread(target=target, name=f"smoke-{name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    seconds = time.monotonic() - start
    if thread.is_alive():
        return PhaseResult(
            name,
            "timeout",
            seconds,
            timeout_s,
            error=f"{name} did not finish within its {timeout_s:.0f}s limit",
        )
    if "error" in box:
        return PhaseResult(
            name, "failed", seconds, timeout_s, error=box["error"], traceback=box["traceback"]
        )
    return PhaseResult(name, "ok", seconds, timeout_s, value=box.get("value"))
