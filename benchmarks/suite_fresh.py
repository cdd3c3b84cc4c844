"""The whole test suite from a fresh machine, against the same suite with everything cached.

usage: python benchmarks/suite_fresh.py --yes [--fresh-only] [--workers=N] [--rev=REV]

Issue 16's goals: the suite within 15 minutes on a 2-core machine with the images cached, and
never more than 40 minutes from a fresh machine. "Fresh" here is as fresh as one machine can be
made without losing its Docker engine: a clean clone of REV (default HEAD) with no .venv, pip's
cache off, a new DLENV_TEST_CACHE (apt archives, locks), and every image the suite builds removed
(dlenv-test/*, dlenv/*, dlenv-local/*) together with Docker's build cache, so the Debian base
images are debootstrapped again, the host and notebook images rebuilt, the provisioned host image
made again. The engine itself (`scripts/ensure-docker`'s install) is kept: on a machine without
one it adds an apt install of docker.io and two .deb downloads.

Then the same clone runs the suite again, now cached: the baseline, measured in the same run, and
what CI sees on this machine. Figures: wall time of each `scripts/test` and fresh/cached.

`--yes` is required: this removes the images and build cache of every dlenv checkout on this
machine (the next run of any of them rebuilds them).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPOS = ("dlenv-test/", "dlenv/", "dlenv-local/")


def images() -> list[str]:
    out = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return [line.split()[1] for line in out if line.startswith(REPOS)]


def wipe() -> None:
    for _ in range(5):  # a parent is refused while its child image exists: again, children gone
        ids = sorted(set(images()))
        if not ids:
            break
        for image in ids:
            users = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"ancestor={image}"],
                capture_output=True,
                text=True,
            ).stdout.split()
            if users:  # a leftover test container holds the image
                subprocess.run(["docker", "rm", "-f", *users], capture_output=True)
            subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True)
    subprocess.run(["docker", "image", "prune", "-f"], capture_output=True)
    subprocess.run(["docker", "builder", "prune", "-af"], capture_output=True)
    left = images()
    if left:
        sys.exit(f"images left after the wipe (a container still uses them?): {left}")


def suite(clone: Path, env: dict[str, str], workers: int, log: Path) -> tuple[float, str]:
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(
            ["scripts/test", "-n", str(workers), "-q", "--durations=15"],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    took = time.monotonic() - start
    tail = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
    summary = re.sub(r"\s+", " ", tail[0]).strip("= ")
    return took, f"rc {proc.returncode}: {summary}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--yes", action="store_true", help="remove the images and build cache")
    parser.add_argument("--fresh-only", action="store_true", help="skip the cached baseline")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("DLENV_TEST_WORKERS", 3)))
    parser.add_argument("--rev", default="HEAD")
    args = parser.parse_args()
    if not args.yes:
        sys.exit("this removes every dlenv image and Docker's build cache: add --yes")
    work = Path(tempfile.mkdtemp(prefix="dlenv-fresh-"))
    clone = work / "dlenv"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", args.rev], check=True)
    rev = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env = {
        **os.environ,
        "PIP_NO_CACHE_DIR": "1",
        "DLENV_TEST_CACHE": str(work / "test-cache"),
    }
    env.pop("VIRTUAL_ENV", None)
    print(f"[suite_fresh] {rev} cloned to {clone}; removing images and build cache", flush=True)
    wipe()
    fresh, fresh_said = suite(clone, env, args.workers, work / "fresh.log")
    print(f"fresh machine: {fresh / 60:.1f} min ({fresh_said})  log {work / 'fresh.log'}")
    if args.fresh_only:
        return
    cached, cached_said = suite(clone, env, args.workers, work / "cached.log")
    print(f"cached (baseline): {cached / 60:.1f} min ({cached_said})  log {work / 'cached.log'}")
    print(
        f"fresh / cached: {fresh / cached:.2f}x   ({args.workers} workers, {os.cpu_count()} CPUs)"
    )
    shutil.rmtree(clone / ".venv", ignore_errors=True)


if __name__ == "__main__":
    main()
