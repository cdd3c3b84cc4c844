"""`dlenv --help` wall time against importing boto3 alone (the baseline), median of N runs.

usage: python benchmarks/cli_startup.py [RUNS]
Why: `dlenv --help` and tab completion run constantly; they must not pay for boto3, paramiko or
the Docker SDK. The ratio shows how much of the SDK import cost the lazy CLI avoids.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    py = sys.executable
    cases = {
        "python -c pass (interpreter floor)": [py, "-c", "pass"],
        "python -c 'import boto3' (baseline)": [py, "-c", "import boto3"],
        "dlenv --help": [py, "-m", "dlenv", "--help"],
        "dlenv up --help": [py, "-m", "dlenv", "up", "--help"],
        "python -c 'import boto3, paramiko, docker'": [py, "-c", "import boto3, paramiko, docker"],
    }
    results = {name: timed(cmd, runs) for name, cmd in cases.items()}
    base = results["python -c 'import boto3' (baseline)"]
    print(f"median of {runs} runs each")
    print(f"{'command':48} {'median ms':>10} {'vs boto3 import':>16}")
    for name, secs in results.items():
        print(f"{name:48} {secs * 1000:10.1f} {secs / base:15.2f}x")


if __name__ == "__main__":
    main()
