"""The idle auto-stop's judgement, on a real systemd host with a real sshd and real SSH clients.

Idle must mean idle: a port-forwarding-only connection (`ssh -N -L`, what `dlenv jupyter`'s tunnel
is) lets the stop come; a terminal (`ssh -t`), a running command and the user's keep-awake file
hold it off; a warning comes once before the stop, and the user's pre-stop hook runs (as the
user, time-limited) before it. The check runs in dry-run mode (it prints instead of stopping) and
with a window of seconds. The busy-kernel case runs on a provisioned host with a real Lab
(tests/provision/test_idle_lab.py), where real kernels run real cells.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from dlenv.provision.manifest import load_stack
from dlenv.provision.steps import file_context, render_file

pytestmark = [pytest.mark.docker, pytest.mark.hosts]

CHECK = "/usr/local/lib/dlenv/idle-check"


def put(host, path: str, text: str, mode: str = "644") -> None:
    subprocess.run(
        [
            "docker",
            "exec",
            "-i",
            host.container,
            "bash",
            "-c",
            'cat > "$0" && chmod "$1" "$0"',
            path,
            mode,
        ],
        input=text,
        text=True,
        check=True,
    )


@pytest.fixture(scope="module")
def host(host_pool):
    """A fresh host with the rendered idle check and its conf installed as the step installs them."""
    h = host_pool()
    res = h.exec(
        "command -v python3 >/dev/null || (apt-get update -qq && "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-minimal >/dev/null)",
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    ctx = file_context(load_stack(), "/opt/dlenv/env", "dlenv", 60)
    h.exec("mkdir -p /usr/local/lib/dlenv /etc/dlenv", check=True)
    put(h, CHECK, render_file("idle-check.j2", ctx) + "\n", "755")
    put(h, "/etc/dlenv/idle.conf", render_file("idle.conf.j2", ctx) + "\n")
    return h


def check(host, seconds: int = 1, **env: str) -> str:
    extra = " ".join(f"{k}={v}" for k, v in env.items())
    res = host.exec(f"DLENV_IDLE_DRY_RUN=1 DLENV_IDLE_SECONDS={seconds} {extra} {CHECK}")
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def fresh_idle(host) -> None:
    """Forget past activity: the next check starts a new window."""
    host.exec("rm -f /run/dlenv/idle-since /run/dlenv/idle-warned", check=True)
    assert "busy: first check" in check(host)
    time.sleep(1.5)


def ssh_argv(host, *args: str) -> list[str]:
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        str(host.key),
        "-p",
        str(host.port),
        "-o",
        f"UserKnownHostsFile={host.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        *args,
        "dlenv@127.0.0.1",
    ]


@pytest.fixture
def connection(host) -> Iterator:
    """open(*ssh args, command=...) -> a live ssh client process; all closed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []

    def open_(*args: str, command: list[str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ssh_argv(host, *args) + (command or []),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        # logged in once sshd's per-connection process carries the user's name
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if host.exec("pgrep -f '^sshd: dlenv'").returncode == 0:
                time.sleep(0.5)
                return proc
            time.sleep(0.2)
        pytest.fail("the SSH client did not log in")

    yield open_
    for proc in procs:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while host.exec("pgrep -f '^sshd: dlenv'").returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.2)


def test_nothing_running_means_the_stop_comes(host) -> None:
    fresh_idle(host)
    out = check(host)
    assert "idle for" in out and "dry run: would run shutdown -h now" in out, out


def test_a_port_forward_alone_is_not_activity(host, connection) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    connection("-N", "-L", f"127.0.0.1:{port}:127.0.0.1:8888")  # what `dlenv jupyter`'s tunnel runs
    fresh_idle(host)
    out = check(host)
    assert "not counted: 1 SSH connection(s) only forwarding ports" in out, out
    assert "would run shutdown -h now" in out, out


def test_a_terminal_keeps_it_awake(host, connection) -> None:
    fresh_idle(host)
    connection("-tt", command=["sleep", "60"])
    out = check(host)
    assert "busy: ssh terminal (dlenv@pts/" in out, out
    assert "shutdown" not in out


def test_a_running_command_keeps_it_awake(host, connection) -> None:
    fresh_idle(host)
    connection("-T", command=["sleep", "60"])
    out = check(host)
    assert "busy: ssh command running (dlenv)" in out, out


def test_keep_awake_deadline_and_touch(host) -> None:
    path = "/home/dlenv/.config/dlenv/keep-awake"
    host.exec(f"install -d -o dlenv -g dlenv /home/dlenv/.config/dlenv && rm -f {path}", check=True)
    fresh_idle(host)
    until = int(time.time()) + 3600
    host.exec(f"echo {until} > {path}", user="dlenv", check=True)
    out = check(host)
    assert "busy: keep-awake until" in out, out
    # a deadline in the past is not a reason; a touch within the window is
    host.exec(f"echo 1 > {path} && touch -d '-1 hour' {path}", user="dlenv", check=True)
    fresh_idle(host)
    assert "would run shutdown" in check(host)
    host.exec(f"touch {path}", user="dlenv", check=True)
    assert "busy: keep-awake file touched" in check(host, seconds=120)
    host.exec(f"rm -f {path}", check=True)


def test_warned_once_before_the_stop(host) -> None:
    host.exec("rm -f /run/dlenv/idle-since /run/dlenv/idle-warned", check=True)
    assert "busy: first check" in check(host, seconds=120)
    time.sleep(1.2)
    first = check(host, seconds=120)  # 2 minutes left, under the 5-minute warning
    assert "warning: dlenv: this machine stops in about 2 min" in first, first
    assert "keep-awake" in first
    second = check(host, seconds=120)
    assert "warning" not in second and "idle for" in second, second
    status = json.loads(host.exec("cat /run/dlenv/idle-status.json").stdout)
    assert status["busy"] == "" and 100 < status["stops_in"] < 120, status


def test_pre_stop_hook_runs_as_the_user_within_its_limit(host) -> None:
    hook = "/home/dlenv/.config/dlenv/pre-stop"
    host.exec("install -d -o dlenv -g dlenv /home/dlenv/.config/dlenv", check=True)
    put(host, hook, '#!/bin/sh\nid -un > "$HOME/hook-ran"\necho saved a checkpoint\n', "755")
    host.exec(f"chown dlenv: {hook} && rm -f /home/dlenv/hook-ran", check=True)
    fresh_idle(host)
    out = check(host)
    assert "running the pre-stop hook" in out and "pre-stop hook exited 0" in out, out
    assert "hook: saved a checkpoint" in out
    assert out.index("pre-stop hook exited") < out.index("would run shutdown"), out
    assert host.exec("cat /home/dlenv/hook-ran").stdout.strip() == "dlenv"
    # a hook that hangs does not hold the stop off past its limit
    put(host, hook, '#!/bin/sh\nsleep 30\ntouch "$HOME/hook-finished"\n', "755")
    host.exec("sed -i 's/^HOOK_SECONDS=.*/HOOK_SECONDS=2/' /etc/dlenv/idle.conf", check=True)
    fresh_idle(host)
    out = check(host)
    assert "still running after 2s: stopping anyway" in out and "would run shutdown" in out, out
    # the check was over before the hook could finish: it did not wait for it
    assert host.exec("test -e /home/dlenv/hook-finished").returncode != 0
    host.exec(f"rm -f {hook}", check=True)


def test_the_rendered_script_is_the_one_the_step_installs() -> None:
    from dlenv.provision.options import ProvisionOptions
    from dlenv.provision.steps import build_steps

    steps = {s.name: s for s in build_steps(load_stack(), ProvisionOptions(user="dlenv"))}
    body = render_file("idle-check.j2", file_context(load_stack(), "/x", "dlenv", 60))
    assert body in steps["idle-autostop"].apply
    conf = render_file("idle.conf.j2", file_context(load_stack(), "/x", "dlenv", 60))
    assert "OWNER=dlenv" in conf and "WARN_MINUTES=5" in conf


def test_keep_awake_cli_over_the_verified_ssh_path(host, isolated_state) -> None:
    import os
    import sys

    (isolated_state / "known_hosts").write_text(host.known_hosts.read_text())
    env = {**os.environ, "DLENV_STATE_DIR": str(isolated_state)}

    def dlenv(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dlenv", "keep-awake", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    spec = ["--host", host.spec, "-i", str(host.key)]
    fresh_idle(host)
    proc = dlenv(*spec, "2h")
    assert proc.returncode == 0, proc.stderr
    assert "stays up until" in proc.stdout + proc.stderr
    deadline = int(host.exec("cat /home/dlenv/.config/dlenv/keep-awake").stdout)
    assert 7100 < deadline - int(time.time()) <= 7200 + 5
    assert "busy: keep-awake until" in check(host)
    proc = dlenv(*spec, "--off")
    assert proc.returncode == 0, proc.stderr
    assert host.exec("test -e /home/dlenv/.config/dlenv/keep-awake").returncode == 1
    for bad in ("3 hours", "0m", "9d"):
        proc = dlenv(*spec, bad)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr


def _running_time(host, hours: float) -> None:
    """Running time since the budget was set, as the check keeps it (/var/lib/dlenv/budget-spent:
    SET_AT, seconds, last tick): hours of it pass here without the test waiting for them, so
    what is asserted does not depend on how fast a loaded machine runs the checks."""
    host.exec(
        "set_at=$(sed -n 's/^SET_AT=//p' /etc/dlenv/budget.conf) && "
        f'echo "$set_at {hours * 3600:.3f} $(date +%s.%N)" > /var/lib/dlenv/budget-spent',
        check=True,
    )


def test_the_budget_warns_then_stops_whatever_is_running(host, connection) -> None:
    from dlenv.provision.idle import budget_command, clear_budget_command

    # $1/h: the seconds between two checks add next to nothing; the hours come from
    # _running_time (test_idle_off_still_enforces_the_budget lets real time accrue)
    res = host.exec(budget_command(3, 1))
    assert res.returncode == 0 and res.stdout.strip().isdigit(), res.stderr
    try:
        conf = host.exec("cat /etc/dlenv/budget.conf").stdout
        assert "BUDGET_USD=3.00\nPRICE_PER_HOUR=1.0000\nSET_AT=" in conf, conf
        connection("-tt", command=["sleep", "60"])  # busy: the budget stops it anyway
        out = check(host, seconds=3600)
        assert "budget: $0.00 of $3.00" in out and "busy: ssh terminal" in out, out
        _running_time(host, 2.5)
        out = check(host, seconds=3600)
        assert "warning: dlenv: $2.50 of this machine's $3.00 budget is spent" in out, out
        assert "stopping" not in out, out
        assert "warning" not in check(host, seconds=3600)  # once per budget
        _running_time(host, 3.01)
        out = check(host, seconds=3600)
        assert "budget of $3.00 reached: stopping" in out and "would run shutdown -h now" in out
        status = json.loads(host.exec("cat /run/dlenv/idle-status.json").stdout)
        assert status["budget_usd"] == 3.0 and status["spent_usd"] >= 3.0, status
        # a new budget counts afresh from when it is set
        time.sleep(1.1)  # SET_AT has one-second resolution
        assert host.exec(budget_command(50, 1)).returncode == 0
        out = check(host, seconds=3600)
        assert "budget: $0.00 of $50.00" in out and "stopping" not in out, out
    finally:
        assert host.exec(clear_budget_command()).returncode == 0
    assert "budget:" not in check(host, seconds=3600)


def test_idle_off_still_enforces_the_budget(host) -> None:
    from dlenv.provision.idle import budget_command, clear_budget_command

    host.exec("sed -i 's/^IDLE_MINUTES=.*/IDLE_MINUTES=0/' /etc/dlenv/idle.conf", check=True)
    try:
        res = host.exec(f"DLENV_IDLE_DRY_RUN=1 {CHECK}")
        assert "idle auto-stop off" in res.stdout and "shutdown" not in res.stdout, res.stdout
        assert host.exec(budget_command(1, 3600)).returncode == 0
        host.exec(f"DLENV_IDLE_DRY_RUN=1 {CHECK}", check=True)
        time.sleep(1.5)  # $1 a second: at least $1.50 of real running time by the next check
        out = host.exec(f"DLENV_IDLE_DRY_RUN=1 {CHECK}").stdout
        assert "budget of $1.00 reached" in out and "would run shutdown" in out, out
    finally:
        host.exec(clear_budget_command())
        host.exec("sed -i 's/^IDLE_MINUTES=.*/IDLE_MINUTES=60/' /etc/dlenv/idle.conf", check=True)
