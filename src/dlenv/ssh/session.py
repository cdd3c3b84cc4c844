"""`SshHost`: a Fabric connection built from an `SshTarget`, host keys always verified.

Host keys are decided by THE host-key policy (`dlenv.ssh.policy.HostKeyPolicy`) over the
target's trust stores: known keys pass, a changed key is always refused, an unknown one is asked
about on a terminal (`--host` boxes), recorded with `trust_on_first_use=True`, else refused. A
ProxyCommand comes from the target, else from the user's ~/.ssh/config entry for that host.
Commands run on raw paramiko channels of Fabric's transport so output streams line by line into
logs and the live progress view. Failures are typed (`dlenv.errors.Ssh*Error`).
"""

from __future__ import annotations

import codecs
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paramiko

from dlenv.errors import (
    HostKeyChangedError,
    HostKeyUnknownError,
    SshAuthError,
    SshError,
    SshTimeoutError,
    SshUnreachableError,
)
from dlenv.ssh.host import LOST, TIMED_OUT, CommandResult, LineSink, iter_lines, sudo_wrap
from dlenv.ssh.policy import HostKeyPolicy, transport_factory
from dlenv.ssh.target import SshTarget


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
            "transport_factory": transport_factory(t),
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
        policy = HostKeyPolicy(t, trust_new=self.trust_on_first_use)
        conn.client.set_missing_host_key_policy(policy)
        try:
            conn.open()
        except SshError:
            conn.close()
            raise
        except paramiko.AuthenticationException as exc:
            conn.close()
            raise SshAuthError(
                f"SSH authentication as {t.user} failed: {exc}",
                "check the user and -i KEY (the key must be in authorized_keys)",
                host=t.label,
            ) from None
        except TimeoutError as exc:
            conn.close()
            via = f" via ProxyCommand {proxy!r}" if proxy else ""
            raise SshTimeoutError(
                f"connecting to {t.host}:{t.port}{via} timed out ({_describe(exc)})",
                "check the address, that sshd runs, and firewalls / security groups",
                host=t.label,
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            conn.close()
            via = f" via ProxyCommand {proxy!r}" if proxy else ""
            raise SshUnreachableError(
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
            except (HostKeyChangedError, HostKeyUnknownError, SshAuthError):
                raise  # waiting does not fix these
            except SshError as exc:
                last = exc
                time.sleep(3)
        raise SshTimeoutError(
            f"host did not come back within {timeout:.0f}s: {last}", host=self.label
        )

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
                    return CommandResult(command, TIMED_OUT, "".join(chunks) + pending)
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
                        raise SshUnreachableError(
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
