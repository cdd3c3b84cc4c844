"""How the suite's xdist workers spent a run: busy time per worker, the idle tail, the modules
that ran last, and the slowest modules (setup + calls + teardown of all their tests).

usage: DLENV_TEST_TIMELINE=/tmp/t.jsonl scripts/test ...; python benchmarks/suite_timeline.py /tmp/t.jsonl

The baseline every figure is a ratio to is the run's own wall time (first start to last end).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def main() -> None:
    rows = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines() if line]
    if not rows:
        sys.exit("no tests in the timeline")
    t0 = min(r["start"] for r in rows)
    wall = max(r["end"] for r in rows) - t0
    print(f"wall {wall / 60:.1f} min, {len(rows)} tests (baseline: 1.00 = the wall time)")
    workers: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        workers[r["worker"]].append(r)
    for name, tests in sorted(workers.items()):
        busy = sum(r["end"] - r["start"] for r in tests)
        last = max(r["end"] for r in tests) - t0
        print(f"  {name}: busy {busy / wall:.2f}, done at {last / wall:.2f} ({last / 60:.1f} min)")
    modules: dict[str, float] = defaultdict(float)
    for r in rows:
        modules[r["test"].split("::")[0]] += r["end"] - r["start"]
    print("slowest modules (share of the wall time):")
    for mod, took in sorted(modules.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {took / wall:.2f}  {took:6.1f}s  {mod}")
    print("last module on each worker:")
    for name, tests in sorted(workers.items()):
        tail = max(tests, key=lambda r: r["end"])
        mod = tail["test"].split("::")[0]
        began = min(r["start"] for r in tests if r["test"].startswith(mod)) - t0
        print(f"  {name}: {mod} from {began / wall:.2f} to {(tail['end'] - t0) / wall:.2f}")


if __name__ == "__main__":
    main()
