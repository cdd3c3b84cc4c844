"""`SshHost`: a Fabric connection built from an `SshTarget`, host keys always verified.

Host keys are checked against `target.known_hosts` only (dlenv's own file, never silently
extended): an unknown key is refused unless `trust_on_first_use=True`, which records it there
(and says so); a changed key is always refused. A ProxyCommand comes from the target, else from
the user's ~/.ssh/config entry for that host. Commands run on raw paramiko channels of Fabric's
transport so output streams line by line into logs and the live progress view.
"""

from __future__ import annotations

import codecs
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paramiko

from dlenv.errors import SshError
from dlenv.remote.base import CommandResult, LineSink, iter_lines, sudo_wrap
from dlenv.ssh_target import SshTarget, load_host_keys

_KNOWN_HOSTS_LOCK = threading.Lock()
LOST = -1
"""exit_code of a command whose connection dropped before it finished."""


def key_fingerprint(key: paramiko.PKey) -> str:
    return (
        f"{key.get_name()} SHA256:{key.fingerprint.split(':', 1)[-1]}"
        if hasattr(key, "fingerprint")
        else key.get_name()
    )


class _VerifyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown host keys, or record them into dlenv's known_hosts when asked to."""

    def __init__(self, target: SshTarget, trust_on_first_use: bool) -> None:
        self.target = target
        self.tofu = trust_on_first_use
        self.recorded: str | None = None

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if not self.tofu or self.target.known_hosts is None:
            raise SshError(
                f"unknown host key for {hostname} ({key_fingerprint(key)})",
                "verify the fingerprint out of band, then re-run with --trust-new-host-key "
                f"(it is recorded in {self.target.known_hosts or 'dlenv known_hosts'})",
                host=self.target.label,
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
        path = self.target.known_hosts
        with _KNOWN_HOSTS_LOCK:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        self.recorded = f"{hostname} {key_fingerprint(key)}"


def proxy_command_for(target: SshTarget) -> str | None:
    """The target's ProxyCommand, else the one ~/.ssh/config gives this host (expanded)."""
    if target.proxy_command:
        return target.expanded_proxy_command()
    config_path = Path.home() / ".ssh" / "config"
    if not config_path.is_file():
        return None
    try:
        entry = paramiko.SSHConfig.from_path(str(config_path)).lookup(target.host)
    except Exception:  # a config paramiko cannot parse must not break connecting
        return None
    command = entry.get("proxycommand")
    if not command or command.lower() == "none":
        return None
    return target.with_(proxy_command=command).expanded_proxy_command()


class SshHost:
    """One SSH session to a target. Thread-confined: one per host per worker thread."""

    def __init__(
        self, target: SshTarget, *, trust_on_first_use: bool = False, connect_timeout: float = 15
    ) -> None:
        self.target = target
        self.label = target.label
        self.trust_on_first_use = trust_on_first_use
        self.connect_timeout = connect_timeout
        self._conn: Any = None
        self.recorded_host_key: str | None = None

    # -- connection -----------------------------------------------------------------------
    def connect(self) -> SshHost:
        if self._conn is not None and self._conn.is_connected:
            return self
        from fabric import Config, Connection

        t = self.target
        kwargs: dict[str, Any] = {
            "banner_timeout": self.connect_timeout,
            "auth_timeout": self.connect_timeout,
        }
        if t.key_file is not None:
            kwargs.update(key_filename=str(t.key_file), look_for_keys=False, allow_agent=False)
        proxy = proxy_command_for(t)
        conn = Connection(
            host=t.host,
            user=t.user,
            port=t.port,
            connect_kwargs=kwargs,
            connect_timeout=self.connect_timeout,
            gateway=proxy or False,
            config=Config(ssh_config=paramiko.SSHConfig()),
        )
        policy = _VerifyPolicy(t, self.trust_on_first_use)
        load_host_keys(conn.client.get_host_keys(), t)
        conn.client.set_missing_host_key_policy(policy)
        try:
            conn.open()
        except SshError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise SshError(
                f"HOST KEY CHANGED for {t.known_hosts_key}: got {key_fingerprint(exc.key)}, "
                f"{t.known_hosts} has {key_fingerprint(exc.expected_key)}",
                "if the host was legitimately rebuilt, remove its line from that file; "
                "otherwise someone may be intercepting the connection",
                host=t.label,
            ) from None
        except paramiko.AuthenticationException as exc:
            raise SshError(
                f"SSH authentication as {t.user} failed: {exc}",
                "check the user and -i KEY (the key must be in authorized_keys)",
                host=t.label,
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            via = f" via ProxyCommand {proxy!r}" if proxy else ""
            raise SshError(
                f"cannot reach {t.host}:{t.port}{via}: {_describe(exc)}",
                "check the address, that sshd runs, and firewalls / security groups",
                host=t.label,
            ) from None
        self.recorded_host_key = policy.recorded
        self._conn = conn
        return self

    def reconnect(self, timeout: float = 600) -> None:
        """Reconnect after the host went away (reboot): retries until `timeout` seconds pass."""
        self.close()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.connect()
                return
            except SshError as exc:
                if "HOST KEY" in exc.message or "authentication" in exc.message:
                    raise
                last = exc
                time.sleep(3)
        raise SshError(f"host did not come back within {timeout:.0f}s: {last}", host=self.label)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def __enter__(self) -> SshHost:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands -------------------------------------------------------------------------
    def run(
        self,
        command: str,
        *,
        stdin: str | None = None,
        on_line: LineSink | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        self.connect()
        transport = self._conn.client.get_transport()
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.set_combine_stderr(True)
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin.encode())
            chan.shutdown_write()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self.close()
            return CommandResult(command, LOST, f"connection lost: {_describe(exc)}\n")
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        chunks: list[str] = []
        pending = ""
        deadline = None if timeout is None else time.monotonic() + timeout
        chan.settimeout(1.0)
        while True:
            try:
                data = chan.recv(65536)
            except TimeoutError:
                if not transport.is_active():
                    break
                if deadline is not None and time.monotonic() > deadline:
                    chan.close()
                    return CommandResult(command, 124, "".join(chunks) + pending)
                continue
            except (OSError, paramiko.SSHException, EOFError):
                break
            if not data:
                break
            text = decoder.decode(data)
            chunks.append(text)
            if on_line:
                pending += text
                for line, rest in iter_lines(pending):
                    on_line(line)
                    pending = rest
        if on_line and pending:
            on_line(pending)
        output = "".join(chunks)
        if not transport.is_active() and not chan.exit_status_ready():
            self.close()
            return CommandResult(command, LOST, output + "\n[connection lost]\n")
        code = chan.recv_exit_status()
        return CommandResult(command, code, output)

    def sudo(
        self,
        command: str,
        *,
        stdin: str | None = None,
        on_line: LineSink | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        wrapped = command if self.target.user == "root" else sudo_wrap(command)
        return self.run(wrapped, stdin=stdin, on_line=on_line, timeout=timeout)

    def put(self, local: Path, remote: str) -> None:
        self.connect()
        self._conn.put(str(local), remote)

    def get(self, remote: str, local: Path) -> None:
        self.connect()
        self._conn.get(remote, str(local))

    @contextmanager
    def forward_local(
        self, local_port: int, remote_port: int, remote_host: str = "127.0.0.1"
    ) -> Iterator[None]:
        """Fabric's tunnel, returned only once its local listener accepts connections.

        Fabric binds the listener in a background thread; without the wait a client that
        connects right away (a browser, a test) can be refused.
        """
        self.connect()
        with self._conn.forward_local(local_port, remote_port=remote_port, remote_host=remote_host):
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", local_port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SshError(
                            f"the tunnel on 127.0.0.1:{local_port} did not open", host=self.label
                        ) from None
                    time.sleep(0.05)
            yield


def _describe(exc: BaseException) -> str:
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return "connection refused"
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return str(exc) or type(exc).__name__
