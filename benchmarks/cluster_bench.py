"""Wall time of `dlenv up NAME --nodes 3` against `up` of one node, and against `up --count 3`.

usage: python benchmarks/cluster_bench.py [--full] [--rounds=N]
The real CLI against moto's server, each instance reached in its own fresh systemd host
container (tests/clusterhosts.py: the cluster e2e test's harness; needs the Docker engine). The
one-node baseline is measured in the same run, and every figure is printed as a ratio to it.
Launch times are moto's (no EC2 boot), so the ratios show what dlenv adds for N nodes: one
RunInstances call and parallel SSH waits and provisioning, against --count's launch-and-wait one
by one. The stack is `--only base-packages` (apt) unless --full (the whole CPU stack from the
wheelhouse; several minutes per host).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    import moto.ec2.responses.general as general

    import clusterhosts
    import moto_placement
    from awsfake import console_with_host_keys, start_moto_server

    full = "--full" in sys.argv[1:]
    if full:
        from docker_support import find_wheelhouse

        stack = ["--python", "uv", "--wheelhouse", str(find_wheelhouse()), "--idle-stop", "0"]
    else:
        stack = ["--only", "base-packages"]
    server, url = start_moto_server()
    moto_placement.install()
    work = Path(tempfile.mkdtemp(prefix="dlenv-cluster-bench-"))

    def timed(
        label: str, names: list[str], up_args: list[str], down_name: str
    ) -> tuple[float, str]:
        """Fresh hosts for `names`, then `dlenv up ...` timed, then `down` (not timed)."""
        case = work / label
        case.mkdir()
        hosts = clusterhosts.start(case, len(names))
        general.SAMPLE_CONSOLE_OUTPUT = console_with_host_keys(hosts.hosts[0].host_keys)
        state = case / "state"
        cluster_key = () if down_name in names else (down_name,)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DLENV_")},
            "AWS_ENDPOINT_URL": url,
            "HOME": str(case),
            "DLENV_STATE_DIR": str(state),
            "DLENV_ALLOW_CIDR": "203.0.113.9/32",
            **clusterhosts.wire(
                state, dict(zip(names, hosts.hosts, strict=True)), keys_for=cluster_key
            ),
        }

        def dlenv(*args: str) -> subprocess.CompletedProcess[str]:
            proc = subprocess.run(
                [sys.executable, "-m", "dlenv", *args],
                env=env,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            if proc.returncode != 0:
                raise SystemExit(f"dlenv {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
            return proc

        try:
            start = time.perf_counter()
            up = dlenv("up", *up_args, "--yes", *stack)
            seconds = time.perf_counter() - start
            downs = [down_name] if down_name not in names or len(names) == 1 else names
            dlenv("down", *downs, "--yes", "--discard-changes")
        finally:
            hosts.stop()
        return seconds, up.stderr

    rounds = 3
    for arg in sys.argv[1:]:
        if arg.startswith("--rounds="):
            rounds = int(arg.split("=", 1)[1])
    rows: dict[str, list[float]] = {"one": [], "nodes": [], "count": []}
    logs = {"nodes": "", "count": ""}
    try:
        for r in range(rounds):  # interleaved: load from other work on the machine hits all three
            one, _ = timed(f"one{r}", [f"b{r}"], [f"b{r}"], f"b{r}")
            names = [f"bn{r}-{k}" for k in range(3)]
            nodes, logs["nodes"] = timed(f"nodes{r}", names, [f"bn{r}", "--nodes", "3"], f"bn{r}")
            names = [f"bc{r}-{k}" for k in range(1, 4)]
            count, logs["count"] = timed(f"count{r}", names, [f"bc{r}", "--count", "3"], names[0])
            for key, secs in (("one", one), ("nodes", nodes), ("count", count)):
                rows[key].append(secs)
            print(
                f"round {r + 1}: one {one:.1f}s, --nodes 3 {nodes:.1f}s ({nodes / one:.2f}x), "
                f"--count 3 {count:.1f}s ({count / one:.2f}x)",
                flush=True,
            )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(rows["one"])
    print(f"stack: {' '.join(stack)}; {rounds} interleaved rounds, medians")
    print(f"{'case':34}  {'seconds':>8}  {'x one node':>10}")
    for key, label in (
        ("one", "up NAME (one node, baseline)"),
        ("nodes", "up NAME --nodes 3"),
        ("count", "up NAME --count 3"),
    ):
        secs = statistics.median(rows[key])
        print(f"{label:34}  {secs:8.1f}  {secs / base:10.2f}")
    for key in ("nodes", "count"):
        print(f"\nwhere `up --{key} 3` spends its time (its own phase lines, last round):")
        for line in logs[key].splitlines():
            if re.search(r"✓ .+\(\d+\.\ds\)|applied \d+ step", line):
                print("  " + line.strip())


if __name__ == "__main__":
    main()
