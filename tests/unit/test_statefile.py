"""Local state under real conditions: atomic writes, cross-process locks, corrupt files, a
shared state dir. Locks are tested with real processes (flock is per open file description)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dlenv import paths, statefile
from dlenv.errors import LockedError, StateFileError

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from dlenv import statefile
    with statefile.locked(Path(sys.argv[1]), what="environment x", timeout=5):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def _hold(lock: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_atomic_write_mode_content_and_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    statefile.atomic_write(target, "new\n", mode=0o600)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_atomic_write_interrupted_keeps_old_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "f"
    target.write_text("old")

    def boom(*_a: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        statefile.atomic_write(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_read_text_names_the_file_and_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "known_hosts"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(StateFileError) as err:
        statefile.read_text(bad, what="dlenv's known_hosts")
    assert str(bad) in err.value.message and "not UTF-8" in err.value.message
    assert err.value.hint and str(bad) in err.value.hint
    assert statefile.read_text(tmp_path / "missing", what="x") is None
    with pytest.raises(StateFileError, match="is a directory"):
        statefile.read_text(tmp_path, what="x")


def test_lock_is_exclusive_across_processes_and_names_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "env-x.lock"
    proc = _hold(lock, 30)
    try:
        with (
            pytest.raises(LockedError) as err,
            statefile.locked(lock, what="environment x", timeout=0.3),
        ):
            pass
        assert f"pid {proc.pid}" in err.value.message
        assert "environment x" in err.value.message
    finally:
        proc.kill()
        proc.wait()


def test_waiting_says_so_once_then_proceeds(tmp_path: Path) -> None:
    lock = tmp_path / "env-x.lock"
    proc = _hold(lock, 1.0)
    said: list[str] = []
    started = time.monotonic()
    with statefile.locked(lock, what="environment x", say=said.append, timeout=30):
        waited = time.monotonic() - started
    proc.wait()
    assert waited > 0.3
    assert len(said) == 1 and said[0].startswith(
        "waiting for another dlenv working on environment x"
    )


def test_a_killed_holder_never_leaves_a_stale_lock(tmp_path: Path) -> None:
    lock = tmp_path / "env-x.lock"
    proc = _hold(lock, 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with statefile.locked(lock, what="environment x", timeout=2):
        pass


def test_reentrant_in_one_thread_exclusive_between_threads(tmp_path: Path) -> None:
    lock = tmp_path / "env-x.lock"
    order: list[str] = []
    with statefile.locked(lock, what="x"):
        with statefile.locked(lock, what="x"):  # up -> start under the same lock
            order.append("inner")

        def other() -> None:
            with statefile.locked(lock, what="x", timeout=10):
                order.append("other")

        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.4)
        order.append("outer-done")
    t.join(10)
    assert order == ["inner", "outer-done", "other"]


def test_state_dir_created_private(tmp_path: Path, monkeypatch) -> None:
    where = tmp_path / "Application Support" / "dlenv"
    monkeypatch.setenv("DLENV_STATE_DIR", str(where))
    assert paths.state_dir() == where
    assert stat.S_IMODE(where.stat().st_mode) == 0o700
    assert stat.S_IMODE(paths.keys_dir().stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_shared_state_dir_is_refused_never_chmodded(tmp_path: Path, monkeypatch, mode: int) -> None:
    where = tmp_path / "state"
    where.mkdir()
    where.chmod(mode)
    monkeypatch.setenv("DLENV_STATE_DIR", str(where))
    with pytest.raises(StateFileError) as err:
        paths.state_dir()
    assert "writable by other users" in err.value.message
    assert err.value.hint == f"make it private: chmod 700 {where}"
    assert stat.S_IMODE(where.stat().st_mode) == mode


def test_state_dir_that_is_a_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    where = tmp_path / "state"
    where.write_text("")
    monkeypatch.setenv("DLENV_STATE_DIR", str(where))
    with pytest.raises(StateFileError, match="is not a directory"):
        paths.state_dir()
