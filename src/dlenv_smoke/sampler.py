"""Sample nvidia-smi while the GPU is under load.

Throttle reasons, clocks and the PCIe link state only mean something under load (an idle GPU
drops its link to Gen1 and its clocks to idle on purpose), so a background thread records the
raw query output every second during training and the matmul/bandwidth phases.
"""

from __future__ import annotations

import threading

from dlenv_smoke import probe


class LoadSampler:
    def __init__(self, interval_s: float = 1.0, enabled: bool = True) -> None:
        self.interval_s = interval_s
        self.enabled = enabled
        self.samples: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            result = probe.query_gpu()
            if result["rc"] == 0:
                self.samples.append(result["out"])
            if len(self.samples) >= 120:
                break

    def __enter__(self) -> LoadSampler:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, name="smoke-sampler", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=probe.COMMAND_TIMEOUT_S + 1)
