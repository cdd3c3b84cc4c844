"""The dpkg lock held at provisioning time (unattended-upgrades right after boot): dlenv waits,
says so, and finishes once the lock is released, instead of failing with apt's lock error."""

from __future__ import annotations

import time

import pytest

from dlenv.provision import runner
from dlenv.provision.options import ProvisionOptions
from dlenv.terminal import Terminal

pytestmark = [pytest.mark.docker, pytest.mark.hosts]

# A real fcntl write lock on dpkg's frontend lock, as apt and unattended-upgrades take it
# (struct flock on x86_64: short type, short whence, 4 pad, off_t start, off_t len, pid_t pid).
HOLD = (
    'nohup perl -MFcntl -e \'open(my $f, ">>", "/var/lib/dpkg/lock-frontend") or die; '
    'my $l = pack("s s x4 q q l x4", F_WRLCK, 0, 0, 0, 0); '
    'fcntl($f, F_SETLKW, $l) or die "lock: $!"; '
    "sleep {seconds}' >/dev/null 2>&1 &"
)


def test_provisioning_waits_for_a_held_dpkg_lock(host_pool) -> None:
    host = host_pool()
    host.exec(HOLD.format(seconds=12), check=True)
    time.sleep(1)
    held = host.exec("dpkg --configure -a")  # dpkg takes the frontend lock too
    assert held.returncode != 0 and "lock" in held.stderr, f"the lock is not held: {held.stderr}"
    lines: list[str] = []
    [res] = runner.provision(
        [host.target()],
        ProvisionOptions(python="uv", only=("base-packages",)),
        Terminal(interactive=False),
        events=lambda label, event, step, text: lines.append(text),
    )
    assert res.ok, res.error
    assert res.applied == ["base-packages"]
    text = "\n".join(lines)
    assert "waiting for unattended-upgrades/apt to release the dpkg lock (held by perl" in text, (
        text[-2000:]
    )
    # it finished only once the holder (12 s) had let go: no clock needed to tell
    assert host.exec("pgrep -f F_SETLKW").returncode != 0, "provisioning ended under the lock"
