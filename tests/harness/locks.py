"""One file lock per expensive shared thing (an image build), so xdist workers never race.

Session fixtures run once per xdist worker: two workers asking for the same image at once would
both build it (twice the time, and `docker build -t` of one name racing). Whoever holds the lock
builds; the others wait, then find the image there.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

CACHE = Path(os.environ.get("DLENV_TEST_CACHE", Path.home() / ".cache" / "dlenv-test"))


@contextmanager
def file_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock named `name` (a file under the test cache) for the block."""
    locks = CACHE / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".lock")
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def claim_slot(name: str) -> tuple[int, IO[str]]:
    """The lowest free slot number of `name` and the open lock file that holds it.

    For a resource one user at a time, several of which may exist (an apt archive dir a host
    container mounts): held until the handle is closed, or its process ends, whichever process
    (xdist worker, another pytest run on the machine) asked."""
    locks = CACHE / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    slot = 0
    while True:
        handle = (locks / f"{name}-{slot}.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            slot += 1
            continue
        return slot, handle


def worker_id() -> str:
    """This process's xdist worker ("gw0", ...), or "main" when the run is not distributed."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")
