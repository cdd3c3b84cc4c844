"""Local state files written atomically, under locks, and read defensively.

Two terminals, Ctrl-C and a closing laptop lid are normal life: every file dlenv shares between
runs (ssh config include, known_hosts, tunnel records, keys, the user config) is

- written by `atomic_write`: a temp file in the same directory, fsync, rename; a reader sees the
  old file or the new one, never half of either, and an interrupted write leaves no debris;
- changed under `locked` when the change is read-modify-write (so ten parallel `dlenv up`s never
  lose each other's entries);
- read by `read_text`, which turns "unreadable" and "not UTF-8" into one `StateFileError` line
  naming the file and the fix, never a traceback.

`env_lock(name)` serialises every mutation of one environment across processes (up, start,
stop, down, provision, ssh-key import). Locks are `flock(2)` advisory locks on files in the
state dir: released by the kernel when the process dies, so a killed dlenv never leaves a
stale lock behind. They are re-entrant within one thread (`up` calls `start` under the same
lock) and exclusive between threads and processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dlenv.errors import LockedError, StateFileError

Say = Callable[[str], None]


def atomic_write(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically (temp file in the same dir + fsync + rename)."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (not on every FS)
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def read_text(path: Path, *, what: str, fix: str | None = None) -> str | None:
    """The file's text, None when it does not exist; StateFileError when it cannot be read."""
    path = Path(path)
    fix = fix or f"fix or remove {path}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        problem = "is a directory, not a file"
        raise StateFileError(f"{what} {path} {problem}", fix, problem=problem) from None
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or type(exc).__name__})"
        raise StateFileError(f"{what} {path} {problem}", fix, problem=problem) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        problem = "is corrupt (not UTF-8 text)"
        raise StateFileError(f"{what} {path} {problem}", fix, problem=problem) from None


# -- locks -------------------------------------------------------------------------------------
class _Held:
    """A lock file this process holds: its fd, the owning thread and the re-entry depth."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.fd: int | None = None
        self.owner: int | None = None
        self.depth = 0


_HELD: dict[str, _Held] = {}
_HELD_GUARD = threading.Lock()


def _holder_of(path: Path) -> str:
    """What the lock file says about its holder (pid and command), for the waiting line."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    match = re.match(r"^(\d+) (.*)$", text)
    if not match:
        return ""
    pid, command = match.groups()
    return f"pid {pid}: {command[:120]}"


@contextlib.contextmanager
def locked(
    path: Path,
    *,
    what: str,
    say: Say | None = None,
    timeout: float | None = 600,
    hint: str | None = None,
) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created 0600) for the block.

    Another holder makes this wait with one visible line (`say`), or, after `timeout` seconds
    (0: do not wait), raise LockedError naming the holder.
    """
    path = Path(path)
    key = str(path.resolve() if path.exists() else path.absolute())
    with _HELD_GUARD:
        held = _HELD.setdefault(key, _Held())
    me = threading.get_ident()
    if held.owner == me:
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    announced = False
    while not held.guard.acquire(timeout=0.2):  # another thread of this process holds it
        if deadline is not None and time.monotonic() > deadline:
            raise LockedError(f"{what} is busy in this process", hint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = _holder_of(path)
                    if deadline is not None and time.monotonic() >= deadline:
                        raise LockedError(
                            f"{what} is in use by another dlenv"
                            + (f" ({holder})" if holder else ""),
                            hint or "wait for that command to finish, then run yours again",
                        ) from None
                    if not announced and say is not None:
                        say(
                            f"waiting for another dlenv working on {what}"
                            + (f" ({holder})" if holder else "")
                        )
                        announced = True
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {' '.join(_argv())}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        held.fd, held.owner, held.depth = fd, me, 1
        try:
            yield
        finally:
            held.fd, held.owner, held.depth = None, None, 0
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing releases the flock
    finally:
        held.guard.release()


def _argv() -> list[str]:
    args = [os.path.basename(sys.argv[0]) if sys.argv else "python", *sys.argv[1:]]
    if args and args[0] in {"__main__.py", "-m"}:
        args[0] = "dlenv"
    return [a.replace("\n", " ") for a in args]


def locks_dir() -> Path:
    from dlenv.paths import state_dir

    path = state_dir() / "locks"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def env_lock(name: str, *, say: Say | None = None, timeout: float | None = 900) -> Any:
    """The per-environment lock every mutation of environment `name` holds (any process)."""
    return locked(
        locks_dir() / f"env-{name}.lock",
        what=f"environment {name}",
        say=say,
        timeout=timeout,
        hint=f"another dlenv command is changing {name}; wait for it (or end it), then retry",
    )


def file_lock(path: Path, *, timeout: float | None = 60) -> Any:
    """The lock guarding a shared state file's read-modify-write (`<file>.lock` beside it)."""
    path = Path(path)
    return locked(
        path.with_name(f".{path.name}.lock"),
        what=str(path),
        timeout=timeout,
        hint=f"another dlenv is writing {path}; retry in a moment",
    )
