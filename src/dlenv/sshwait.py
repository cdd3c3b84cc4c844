"""Wait until a new machine accepts an SSH login, verifying its host key.

Three phases, each reported: the port answers, the host key is known (from the console output
when AWS has it, else trusted on first use and recorded), and a login with dlenv's key runs a
command. A wrong host key or a refused key is reported at once, not retried into a timeout.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
from collections.abc import Callable

from dlenv.errors import SshError
from dlenv.ssh_target import SshTarget

Say = Callable[[str], None]


def fingerprint(key_b64: str) -> str:
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def wait_for_port(target: SshTarget, deadline: float) -> None:
    """TCP connect to the SSH port (skipped with a ProxyCommand: the proxy reaches the host)."""
    if target.proxy_command:
        return
    delay = 1.0
    while True:
        try:
            with socket.create_connection((target.host, target.port), timeout=5):
                return
        except OSError as exc:
            if time.monotonic() + delay > deadline:
                raise SshError(
                    f"port {target.port} on {target.host} did not answer ({exc.__class__.__name__})",
                    "the instance may still be booting (`dlenv status`), or your IP changed since "
                    f"launch and the security group blocks it: `dlenv allow-ip {target.name or 'NAME'}`",
                    host=target.label,
                ) from None
            time.sleep(delay)
            delay = min(delay * 1.5, 10)


def _connect(target: SshTarget, tofu: bool, say: Say):
    import paramiko

    from dlenv.ssh_target import load_host_keys
    from dlenv.sshconfig import add_host_keys

    known_hosts = str(target.known_hosts)
    client = paramiko.SSHClient()
    load_host_keys(client.get_host_keys(), target)

    class TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            if not tofu:
                raise SshError(
                    f"host key of {hostname} is unknown and could not be verified",
                    "dlenv found no host keys in the console output",
                    host=target.label,
                )
            b64 = key.get_base64()
            add_host_keys(target.known_hosts_key, [f"{key.get_name()} {b64}"])
            say(
                f"host key not in the console output yet: trusting on first use "
                f"{key.get_name()} {fingerprint(b64)} (recorded in {known_hosts})"
            )

    client.set_missing_host_key_policy(TrustOnFirstUse())
    sock = paramiko.ProxyCommand(target.expanded_proxy_command()) if target.proxy_command else None
    client.connect(
        target.host,
        port=target.port,
        username=target.user,
        key_filename=str(target.key_file) if target.key_file else None,
        sock=sock,
        timeout=10,
        banner_timeout=30,
        auth_timeout=30,
        allow_agent=False,
        look_for_keys=target.key_file is None,
    )
    return client


def wait_for_login(
    target: SshTarget,
    deadline: float,
    say: Say,
    console_keys: Callable[[], list[str]] | None = None,
    console_wait: float | None = None,
    console_tail: Callable[[], str] | None = None,
    slow_after: float = 120,
) -> None:
    """Retry until `true` runs over SSH; host keys from `console_keys()` when it yields them.

    When login still fails after `slow_after` seconds, the tail of the instance console is shown
    once (a slow cloud-init, a kernel panic or a full disk shows up there, not in SSH errors).
    """
    import paramiko

    from dlenv.sshconfig import add_host_keys, known_keys

    if console_wait is None:
        console_wait = float(os.environ.get("DLENV_CONSOLE_KEY_WAIT", "90"))
    started = time.monotonic()
    shown_console = False
    have_keys = bool(known_keys(target.known_hosts_key))
    auth_failures = 0
    delay = 2.0
    last_error = "no answer"
    while True:
        if not have_keys and console_keys is not None:
            keys = console_keys()
            if keys:
                add_host_keys(target.known_hosts_key, keys)
                say(
                    f"host keys read from the instance console: {', '.join(k.split()[0] for k in keys)}"
                )
                have_keys = True
        tofu = console_keys is None or time.monotonic() - started >= console_wait
        if have_keys or tofu:
            try:
                client = _connect(target, tofu=tofu and not have_keys, say=say)
                try:
                    _, stdout, _ = client.exec_command("true", timeout=30)
                    stdout.channel.recv_exit_status()
                finally:
                    client.close()
                return
            except paramiko.BadHostKeyException as exc:
                raise SshError(
                    f"host key mismatch for {target.host}: the server presented "
                    f"{fingerprint(exc.key.get_base64())}",
                    f"if the machine was rebuilt, remove its entry from {target.known_hosts}; "
                    "otherwise something is intercepting the connection",
                    host=target.label,
                ) from None
            except paramiko.AuthenticationException:
                # cloud-init installs the key a few seconds after sshd starts: retry briefly
                auth_failures += 1
                last_error = "key refused"
                if auth_failures >= 6:
                    raise SshError(
                        f"SSH login as {target.user!r} refused with key {target.key_file}",
                        "the key does not match the instance's key pair, or the login user is "
                        "wrong (set ssh_user)",
                        host=target.label,
                    ) from None
            except (OSError, EOFError, paramiko.SSHException) as exc:
                last_error = f"{exc.__class__.__name__}: {exc}"[:200]
        if (
            console_tail is not None
            and not shown_console
            and time.monotonic() - started >= slow_after
        ):
            shown_console = True
            tail = console_tail().strip()
            if tail:
                say(
                    f"still no SSH login after {time.monotonic() - started:.0f}s ({last_error}); "
                    f"the instance console ends with:\n{tail}"
                )
        if time.monotonic() + delay > deadline:
            raise SshError(
                f"SSH login did not succeed before the timeout (last: {last_error})",
                "the instance may still be booting; run `dlenv up` again to keep waiting, "
                "or raise --ssh-timeout",
                host=target.label,
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 10)
