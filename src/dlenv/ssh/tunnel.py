"""The SSH tunnel to a remote JupyterLab: `ssh -N -L` under a supervisor that reconnects.

Why the system ssh client: it honours the same verified settings as `ssh dlenv-NAME` (the target's
known_hosts files with StrictHostKeyChecking, the environment's key, ProxyCommand for
SSM/bastions), and keepalives detect a dead link so the supervisor can reconnect while the user
keeps working.

Background tunnels run `python -m dlenv.ssh.tunnel NAME` (the spec arrives on stdin, so the token
never shows in `ps`) and are recorded in the state dir (pid, port, URL), written atomically 0600
and read defensively: a corrupt record is one warning line and is dropped. `jupyter --stop`
signals a pid only after `ps` shows it is this module's supervisor for that tunnel name.
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlenv.errors import DlenvError, SshError, StateFileError, UsageError
from dlenv.ssh.openssh import classify, prepare, ssh_binary, ssh_options
from dlenv.ssh.target import SshTarget

if TYPE_CHECKING:
    from dlenv.provision.jupyter import RemoteJupyter

Say = Callable[[str], None]
MODULE = "dlenv.ssh.tunnel"


# -- Jupyter on the remote side -----------------------------------------------------------
def fetch_token(target: SshTarget, jup: RemoteJupyter, name_hint: str) -> str:
    """Check the service answers, then read the token: one ssh round trip (see RemoteJupyter)."""
    from dlenv.ssh.openssh import run_remote

    proc = run_remote(target, ["sh", "-c", jup.token_script()])
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
    target: SshTarget
    local_port: int
    remote_port: int
    url: str
    refresh: dict[str, str] | None = None
    """How a background supervisor finds the target's current address before it reconnects
    (an EC2 environment's public IP changes on every start): `resolver` names a function
    `module:function(target, refresh) -> SshTarget | None` of a layer above this one (None: not
    reachable now), the other keys are its arguments. The host key stays checked under the
    target's alias, so a new address never means a new, unverified key."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "target": self.target.to_dict(),
                "local_port": self.local_port,
                "remote_port": self.remote_port,
                "url": self.url,
                "refresh": self.refresh,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TunnelSpec:
        data = json.loads(text)
        return cls(
            name=str(data["name"]),
            target=SshTarget.from_dict(data["target"]),
            local_port=int(data["local_port"]),
            remote_port=int(data["remote_port"]),
            url=str(data["url"]),
            refresh={str(k): str(v) for k, v in data["refresh"].items()}
            if isinstance(data.get("refresh"), dict)
            else None,
        )


def ssh_forward_command(spec: TunnelSpec) -> list[str]:
    return [
        ssh_binary(),
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-L",
        f"127.0.0.1:{int(spec.local_port)}:127.0.0.1:{int(spec.remote_port)}",
        *ssh_options(spec.target),
    ]


def supervise(
    spec: TunnelSpec,
    say: Say,
    *,
    max_restarts: int | None = None,
    stop: Callable[[], bool] = lambda: False,
    resolve: Callable[[SshTarget], SshTarget | None] | None = None,
) -> None:
    """Keep `ssh -L` running; when the link drops, reconnect with backoff until stopped.

    `resolve` (background tunnels to environments) gives the target's current address before
    each reconnect, or None while it is not running (a stopped or interrupted spot instance):
    the supervisor then waits and asks again instead of dialling an address that is gone."""
    import dataclasses

    prepare(spec.target)
    restarts = 0
    delay = 1.0
    while not stop():
        if restarts and resolve is not None:
            current = resolve(spec.target)
            if current is None:
                say(f"{spec.name} is not running now; asking again in {delay:.0f}s")
                time.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            if current.host != spec.target.host:
                say(f"{spec.name} is now at {current.host}; reconnecting there")
                spec = dataclasses.replace(spec, target=current)
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
            raise classify(spec.target, err or "")
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
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def record_path(name: str) -> Path:
    if "/" in name or name.startswith(".") or any(c in name for c in "\n\r\0"):
        raise UsageError(f"tunnel name {name!r} cannot be a file name", "use a plain name")
    return tunnels_dir() / f"{name}.json"


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_our_supervisor(pid: int, name: str) -> bool:
    """Whether `pid` runs this module's supervisor for tunnel `name` (`ps -o command=`, which
    both procps and macOS's BSD ps support; `-ww` so a long command line is not cut)."""
    if pid <= 1:
        return False
    try:
        proc = subprocess.run(
            ["ps", "-ww", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    words = proc.stdout.split()
    if proc.returncode != 0 or MODULE not in words:
        return False
    rest = words[words.index(MODULE) + 1 :]
    return bool(rest) and rest[0] == name


def _load(path: Path, say: Say | None) -> dict[str, Any] | None:
    """One record, or None (a corrupt one is reported in one line and removed)."""
    from dlenv.statefile import read_text

    problem = None
    try:
        record = json.loads(read_text(path, what="tunnel record") or "null")
        if not isinstance(record, dict):
            problem = "is not a JSON object"
        else:
            for key, kind in (("name", str), ("pid", int), ("local_port", int), ("url", str)):
                if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
                    problem = f"has no valid {key!r}"
                    break
    except StateFileError as exc:
        problem = exc.problem or exc.message
    except ValueError:
        problem = "is not valid JSON"
    if problem is None and isinstance(record, dict):
        return record
    _say(say, f"tunnel record {path} {problem}: removed it (close a tunnel left running by hand)")
    path.unlink(missing_ok=True)
    return None


def _say(say: Say | None, message: str) -> None:
    if say is not None:
        say(message)
    else:
        print(f"warning: {message}", file=sys.stderr)


def open_tunnels(say: Say | None = None) -> list[dict[str, Any]]:
    """Background tunnels whose supervisor is alive (stale or foreign records are removed)."""
    found = []
    for path in sorted(tunnels_dir().glob("*.json")):
        record = _load(path, say)
        if record is None:
            continue
        pid = record["pid"]
        if pid > 1 and not pid_alive(pid):
            path.unlink(missing_ok=True)  # ended (reboot, killed): a normal stale record
        elif not is_our_supervisor(pid, record["name"]):
            _say(
                say,
                f"tunnel record {path} names pid {pid}, which is not a dlenv tunnel for "
                f"{record['name']}: dropped the record, signalled nothing",
            )
            path.unlink(missing_ok=True)
        else:
            found.append(record)
    return found


def start_background(spec: TunnelSpec, timeout: float = 30) -> dict[str, Any]:
    """Detach a supervisor process, wait until the local port answers, record it."""
    from dlenv.statefile import atomic_write

    prepare(spec.target)
    path = record_path(spec.name)
    log = tunnels_dir() / f"{spec.name}.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", MODULE, spec.name],
            stdin=subprocess.PIPE,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
        )
    assert proc.stdin is not None
    proc.stdin.write(spec.to_json())
    proc.stdin.close()
    record = {
        "name": spec.name,
        "pid": proc.pid,
        "local_port": spec.local_port,
        "url": spec.url,
        "log": str(log),
        "started": time.time(),
    }
    atomic_write(path, json.dumps(record), mode=0o600)  # the URL carries the token
    if not wait_local(spec.local_port, timeout) or proc.poll() is not None:
        stop_background(spec.name)
        tail = log.read_text(errors="replace")[-400:].strip()
        raise SshError(
            f"the background tunnel did not come up: {tail or 'no output'}",
            f"see {log}",
            host=spec.name,
        )
    return record


def stop_background(name: str | None = None, say: Say | None = None) -> list[str]:
    """Stop background tunnels (`name`'s, or all): only pids verified to be our supervisors."""
    stopped = []
    for record in open_tunnels(say):
        if name and record["name"] != name:
            continue
        pid = record["pid"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # its own session: the supervisor and its ssh
        for _ in range(50):
            if not pid_alive(pid):
                break
            time.sleep(0.1)
        record_path(record["name"]).unlink(missing_ok=True)
        stopped.append(record["name"])
    return stopped


def _resolver(spec: TunnelSpec, say: Say) -> Callable[[SshTarget], SshTarget | None] | None:
    """The address lookup `spec.refresh` names (imported by name: this layer knows no AWS)."""
    if not spec.refresh or ":" not in spec.refresh.get("resolver", ""):
        return None
    import importlib

    module, _, function = spec.refresh["resolver"].partition(":")
    if not module.startswith("dlenv."):
        return None  # only dlenv's own code; the record is ours, but keep the rule simple
    found = getattr(importlib.import_module(module), function)
    refresh = spec.refresh

    def resolve(target: SshTarget) -> SshTarget | None:
        try:
            resolved: SshTarget | None = found(target, refresh)  # (imported by name: Any)
            return resolved
        except DlenvError as exc:  # AWS unreachable for a moment: keep the old address
            say(
                f"could not look up {spec.name}'s address ({exc.one_line()}); keeping {target.host}"
            )
            return target

    return resolve


def _daemon(name: str) -> None:
    spec = TunnelSpec.from_json(sys.stdin.read())
    if spec.name != name:
        raise SystemExit(f"tunnel spec is for {spec.name!r}, not {name!r}")
    stopping = {"flag": False}

    def on_term(signum: int, frame: object) -> None:
        stopping["flag"] = True
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    resolve = _resolver(spec, lambda msg: print(msg, flush=True))
    try:
        supervise(
            spec,
            lambda msg: print(msg, flush=True),
            stop=lambda: stopping["flag"],
            resolve=resolve,
        )
    except DlenvError as exc:
        print(f"error: {exc.one_line()} ({exc.hint})", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    _daemon(sys.argv[1])
