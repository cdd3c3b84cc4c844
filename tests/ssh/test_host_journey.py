"""The "any SSH box" journey through the real CLI, on one fresh host container:
provision --host -> jupyter --host (background tunnel) -> smoke-test --host -> ssh --host -> stop.

Every step after `provision --trust-new-host-key` reaches the box with OpenSSH, which must find
the key that the paramiko path recorded (it did not before: "host key ... could not be verified").
The CLI runs without a terminal, in a HOME whose dlenv state dir has a space, and the user's own
~/.ssh/known_hosts is never written.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

pytestmark = [pytest.mark.docker, pytest.mark.hosts, pytest.mark.slow]


def test_provision_jupyter_smoke_ssh_on_one_host(home, host) -> None:
    from docker_support import find_wheelhouse

    started = time.monotonic()
    spec = host.spec
    key = str(host.key)
    provision = [
        "provision",
        "--host",
        spec,
        "-i",
        key,
        "--python",
        "uv",
        "--wheelhouse",
        str(find_wheelhouse()),
        "--idle-stop",
        "0",
    ]
    # no terminal, no flag: refused with the hint, nothing recorded, nothing changed on the host
    refused = home.dlenv(*provision)
    assert refused.code == 1, refused.err
    assert "unknown host key" in refused.err and "--trust-new-host-key" in refused.err
    assert "Traceback" not in refused.err
    assert (
        not (home.state / "known_hosts").exists()
        or not (home.state / "known_hosts").read_text().strip()
    )
    assert host.exec("test -e /opt/dlenv || test -e /var/lib/dlenv").returncode == 1

    done = home.dlenv(*provision, "--trust-new-host-key", timeout=600)
    assert done.code == 0, done.err[-3000:]
    recorded = (home.state / "known_hosts").read_text().split()
    assert recorded[0] == f"[127.0.0.1]:{host.port}"
    assert " ".join(recorded[1:3]) in [" ".join(k.split()[:2]) for k in host.host_keys]
    print(f"provision: {time.monotonic() - started:.0f}s")

    jup = home.dlenv("jupyter", "--host", spec, "-i", key, "--background", "--no-browser")
    assert jup.code == 0, jup.err
    url = jup.out.strip().splitlines()[-1]
    base, token = url.split("/lab?token=")
    try:
        status = requests.get(f"{base}/api/status", params={"token": token}, timeout=30)
        assert status.status_code == 200
        assert requests.get(f"{base}/api/kernels", timeout=30).status_code == 403

        smoke = home.dlenv("smoke-test", "--host", spec, "-i", key, "--json", timeout=300)
        assert smoke.code == 10, smoke.err[-2000:]  # passed on the CPU (no GPU in a container)
        assert json.loads(smoke.out)["verdict"] == "cpu-only"

        ssh = home.dlenv("ssh", "--host", spec, "-i", key, "--", "id", "-un")
        assert ssh.code == 0 and ssh.out.strip() == "dlenv", ssh.err
    finally:
        stop = home.dlenv("jupyter", "--stop")
    assert stop.code == 0 and f"127.0.0.1:{host.port}" in stop.err, stop.err
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/api/status", timeout=5)
    assert not (home.root / ".ssh" / "known_hosts").exists()
    print(f"journey: {time.monotonic() - started:.0f}s")


def test_a_changed_host_key_stops_every_path(home, host) -> None:
    """A key recorded for the address that the box no longer has: refused by paramiko and
    OpenSSH paths alike, even with --trust-new-host-key."""
    fake = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ9NUxqPZu5a7bMkJ0W2GQFEu0S0Rk0oQZ0J6n9Z7l2V"
    (home.state / "known_hosts").write_text(f"[127.0.0.1]:{host.port} {fake}\n")
    res = home.dlenv(
        "provision", "--host", host.spec, "-i", str(host.key), "--plan", "--trust-new-host-key"
    )
    assert res.code == 1 and "HOST KEY CHANGED" in res.err and "Traceback" not in res.err, res.err
    # `dlenv ssh` becomes the ssh client (exec): OpenSSH itself refuses, with its own warning
    res = home.dlenv("ssh", "--host", host.spec, "-i", str(host.key), "--", "true")
    assert res.code == 255 and "REMOTE HOST IDENTIFICATION HAS CHANGED" in res.err, res.err
    assert (home.state / "known_hosts").read_text().split()[1:] == fake.split()


def _on_a_terminal(home, args: list[str], answer: str) -> tuple[int, str]:
    """Run the CLI with stdin and stderr on a pseudo-terminal; answer the host-key question."""
    import os
    import pty
    import select
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlenv", *args],
        env=home.env,
        stdin=slave,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    seen, answered = b"", False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"(yes/no" in seen:
                os.write(master, answer.encode() + b"\n")
                answered = True
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=60)
    os.close(master)
    return code, seen.decode(errors="replace")


def test_an_unknown_key_on_a_terminal_is_shown_and_asked(home, host) -> None:
    args = ["ssh", "--host", host.spec, "-i", str(host.key), "--", "true"]
    code, out = _on_a_terminal(home, args, "no")
    assert "SHA256:" in out and "Are you sure you want to continue connecting" in out, out
    assert code == 1 and "was not accepted" in out, out
    assert not (home.state / "known_hosts").exists()
    code, out = _on_a_terminal(home, args, "yes")
    assert code == 0, out
    assert (home.state / "known_hosts").read_text().startswith(f"[127.0.0.1]:{host.port} ")
    # known now: no question, OpenSSH (strict checking) agrees, the user's file is untouched
    again = home.dlenv(*args)
    assert again.code == 0 and "Are you sure" not in again.err, again.err
    assert not (home.root / ".ssh" / "known_hosts").exists()
