"""Print measured figures of the smoke test's CPU path (what CI exercises).

Runs `python -m dlenv_smoke --device cpu --json` in a subprocess for each mode, exactly as a
user or CI would, and prints wall time (torch import included), the job's own phase timings,
training accuracy/loss and samples/s, and the CPU matmul/copy figures.

    .venv/bin/python benchmarks/smoke_cpu.py            # quick and full
    .venv/bin/python benchmarks/smoke_cpu.py --quick    # one mode
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def run(mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("DLENV_SMOKE_SABOTAGE", None)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "dlenv_smoke", "--device", "cpu", f"--{mode}", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    wall = time.perf_counter() - start
    report = json.loads(proc.stdout)
    report["_wall_s"] = wall
    report["_rc"] = proc.returncode
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--full", action="store_true")
    args = p.parse_args()
    modes = [m for m in ("quick", "full") if getattr(args, m)] or ["quick", "full"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"host: {platform.machine()}, {os.cpu_count()} CPUs, load average {load:.2f}")
    for mode in modes:
        r = run(mode)
        t, fig = r["train"], r["figures"]["devices"][0]
        print(
            f"--{mode}: verdict {r['verdict']} (exit {r['_rc']}), wall {r['_wall_s']:.1f} s, "
            f"phases " + ", ".join(f"{k} {v:.1f} s" for k, v in r["timings"].items())
        )
        print(
            f"  train: {t['steps']} steps x {t['batch_size']}, {t['precision']}, "
            f"workers {t['workers']}: accuracy {t['accuracy']:.1%}, held-out loss "
            f"{t['loss_before']:.3f} -> {t['loss_after']:.3f} ({t['loss_factor']}x), "
            f"{t['samples_per_s']:.0f} samples/s"
        )
        mm, bw = fig["matmul_fp32"], fig["bandwidth"]
        print(
            f"  matmul fp32 n={mm['n']}: {mm['tflops'] * 1000:.1f} GFLOP/s "
            f"(check max rel. error {mm['check']['max_rel_error']:.1e}); "
            f"copy {bw['bytes_copied'] >> 20} MiB: {bw['gbps']:.1f} GB/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
