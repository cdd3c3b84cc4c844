"""The SSH tunnel to a remote JupyterLab: `ssh -N -L` under a supervisor that reconnects.

Why the system ssh client: it honours the same verified settings as `ssh dlenv-NAME` (dlenv's
known_hosts with StrictHostKeyChecking, the environment's key, ProxyCommand for SSM/bastions, the
user's agent and ~/.ssh/config), and keepalives detect a dead link so the supervisor can reconnect
while the user keeps working. Background tunnels are recorded in the state dir (pid, port, URL).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dlenv.errors import DlenvError, SshError, UsageError
from dlenv.ssh_target import SshTarget

Say = Callable[[str], None]


def ssh_options(target: SshTarget) -> list[str]:
    """ssh(1) arguments that reach `target` non-interactively, host keys always verified."""
    opts = [*target.openssh_options(), ("BatchMode", "yes"), ("ConnectTimeout", "20")]
    return [
        *(arg for key, value in opts for arg in ("-o", f"{key}={value}")),
        f"{target.user}@{target.host}",
    ]


def ssh_binary() -> str:
    import shutil

    binary = shutil.which("ssh")
    if binary is None:
        raise DlenvError(
            "no ssh client found", "install OpenSSH (e.g. `apt-get install openssh-client`)"
        )
    return binary


def run_remote(target: SshTarget, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """One command over ssh; host-key and auth failures become SshErrors with the fix."""
    proc = subprocess.run(
        [ssh_binary(), *ssh_options(target), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode == 255:
        raise _ssh_failure(target, proc.stderr)
    return proc


def _ssh_failure(target: SshTarget, stderr: str) -> SshError:
    text = stderr.strip().splitlines()[-1] if stderr.strip() else "ssh failed"
    if (
        "Host key verification failed" in stderr
        or "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr
    ):
        return SshError(
            f"host key of {target.host} could not be verified",
            f"connect once with `ssh {target.user}@{target.host}` to check and record its key, "
            f"or remove a stale entry from {target.known_hosts or '~/.ssh/known_hosts'}",
            host=target.label,
        )
    if "Permission denied" in stderr:
        return SshError(
            f"SSH login as {target.user} was refused",
            "check the user and the key (-i)",
            host=target.label,
        )
    return SshError(
        f"cannot reach {target.host}:{target.port} over SSH: {text}",
        "check that the machine runs (`dlenv status`) and your network",
        host=target.label,
    )


# -- Jupyter on the remote side -----------------------------------------------------------
def fetch_token(target: SshTarget, jup: Any, name_hint: str) -> str:
    """Check the service answers, then read the token: one ssh round trip (see RemoteJupyter)."""
    proc = run_remote(target, jup.token_script())
    return jup.token_from(proc.returncode, proc.stdout, target.label, name_hint)


# -- local port ---------------------------------------------------------------------------
def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(wanted: int, tries: int = 100) -> int:
    for port in range(wanted, min(wanted + tries, 65536)):
        if port_free(port):
            return port
    raise UsageError(
        f"no free local port in {wanted}-{wanted + tries - 1}", "pass --port with a free port"
    )


def wait_local(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        time.sleep(0.2)
    return False


# -- the supervised tunnel ------------------------------------------------------------------
@dataclass
class TunnelSpec:
    name: str
    target: dict
    local_port: int
    remote_port: int
    url: str

    def ssh_target(self) -> SshTarget:
        data = dict(self.target)
        for key in ("key_file", "known_hosts"):
            if data.get(key):
                data[key] = Path(data[key])
        return SshTarget(**data)


def ssh_forward_command(spec: TunnelSpec) -> list[str]:
    return [
        ssh_binary(),
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-L",
        f"127.0.0.1:{spec.local_port}:127.0.0.1:{spec.remote_port}",
        *ssh_options(spec.ssh_target()),
    ]


def supervise(
    spec: TunnelSpec,
    say: Say,
    *,
    max_restarts: int | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Keep `ssh -L` running; when the link drops, reconnect with backoff until stopped."""
    restarts = 0
    delay = 1.0
    while not stop():
        started = time.monotonic()
        proc = subprocess.Popen(
            ssh_forward_command(spec), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            _, err = proc.communicate()
        except KeyboardInterrupt:
            proc.terminate()
            raise
        if stop():
            return
        if proc.returncode == 255 and time.monotonic() - started < 5 and restarts == 0:
            raise _ssh_failure(spec.ssh_target(), err or "")
        restarts += 1
        if max_restarts is not None and restarts > max_restarts:
            raise SshError("the tunnel keeps dropping", "check the network and `dlenv status`")
        if time.monotonic() - started > 60:
            delay = 1.0
        say(
            f"tunnel to {spec.name} dropped ({(err or '').strip()[-120:] or f'exit {proc.returncode}'}); "
            f"reconnecting in {delay:.0f}s"
        )
        time.sleep(delay)
        delay = min(delay * 2, 30)


# -- background tunnels ---------------------------------------------------------------------
def tunnels_dir() -> Path:
    from dlenv.paths import state_dir

    path = state_dir() / "tunnels"
    path.mkdir(exist_ok=True)
    return path


def record_path(name: str) -> Path:
    return tunnels_dir() / f"{name}.json"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_tunnels() -> list[dict]:
    """Background tunnels whose supervisor is alive (stale records are removed)."""
    found = []
    for path in sorted(tunnels_dir().glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except ValueError:
            path.unlink(missing_ok=True)
            continue
        if pid_alive(int(record.get("pid", 0))):
            found.append(record)
        else:
            path.unlink(missing_ok=True)
    return found


def start_background(spec: TunnelSpec, timeout: float = 30) -> dict:
    """Detach a supervisor process, wait until the local port answers, record it."""
    log = tunnels_dir() / f"{spec.name}.log"
    payload = json.dumps(asdict(spec), default=str)
    with log.open("a") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dlenv.tunnel", payload],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record = {
        "name": spec.name,
        "pid": proc.pid,
        "local_port": spec.local_port,
        "url": spec.url,
        "log": str(log),
        "started": time.time(),
    }
    record_path(spec.name).write_text(json.dumps(record))
    os.chmod(record_path(spec.name), 0o600)  # the URL carries the token
    if not wait_local(spec.local_port, timeout) or proc.poll() is not None:
        stop_background(spec.name)
        tail = log.read_text()[-400:].strip()
        raise SshError(
            f"the background tunnel did not come up: {tail or 'no output'}",
            f"see {log}",
            host=spec.name,
        )
    return record


def stop_background(name: str | None = None) -> list[str]:
    stopped = []
    for record in open_tunnels():
        if name and record["name"] != name:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(record["pid"]), signal.SIGTERM)
        for _ in range(50):
            if not pid_alive(int(record["pid"])):
                break
            time.sleep(0.1)
        record_path(record["name"]).unlink(missing_ok=True)
        stopped.append(record["name"])
    return stopped


def _daemon(payload: str) -> None:
    spec = TunnelSpec(**json.loads(payload))
    stopping = {"flag": False}

    def on_term(signum, frame):
        stopping["flag"] = True
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        supervise(spec, lambda msg: print(msg, flush=True), stop=lambda: stopping["flag"])
    except DlenvError as exc:
        print(f"error: {exc.one_line()} ({exc.hint})", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    _daemon(sys.argv[1])
