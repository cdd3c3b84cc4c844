"""Wait until a new EC2 machine accepts an SSH login, verifying its host key.

Three phases, each reported: the port answers, the host key is known (from the console output
when AWS has it, else trusted on first use and recorded), and a login with dlenv's key runs a
command. A wrong host key or a refused key is reported at once, not retried into a timeout.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dlenv.errors import (
    HostKeyChangedError,
    HostKeyUnknownError,
    SshAuthError,
    SshTimeoutError,
    SshUnreachableError,
)
from dlenv.ssh.target import SshTarget

if TYPE_CHECKING:
    import paramiko

Say = Callable[[str], None]


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
                raise SshUnreachableError(
                    f"port {target.port} on {target.host} did not answer ({exc.__class__.__name__})",
                    "the instance may still be booting (`dlenv status`), or your IP changed since "
                    f"launch and the security group blocks it: `dlenv allow-ip {target.name or 'NAME'}`",
                    host=target.label,
                ) from None
            time.sleep(delay)
            delay = min(delay * 1.5, 10)


def _connect(target: SshTarget, tofu: bool, say: Say) -> paramiko.SSHClient:
    """A paramiko client logged in to `target`, its host key decided by THE policy (EC2: no
    prompt; an unknown key is recorded only when `tofu`, i.e. the console never gave keys)."""
    import paramiko

    from dlenv.ssh.policy import HostKeyPolicy, transport_factory

    client = paramiko.SSHClient()
    policy = HostKeyPolicy(target, trust_new=tofu, ask=False)
    client.set_missing_host_key_policy(policy)
    proxy = target.expanded_proxy_command()
    sock = paramiko.ProxyCommand(proxy) if proxy else None
    try:
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
            transport_factory=transport_factory(target),
        )
    except BaseException:
        client.close()
        raise
    if policy.recorded:
        say(
            f"host key not in the console output yet: trusting on first use "
            f"{policy.recorded.split(' ', 1)[1]} (recorded in {target.known_hosts})"
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

    from dlenv.ssh.known_hosts import add_host_keys, known_keys

    if console_wait is None:
        console_wait = float(os.environ.get("DLENV_CONSOLE_KEY_WAIT", "90"))
    started = time.monotonic()
    shown_console = False
    have_keys = bool(known_keys(target.known_hosts_key, target.known_hosts))
    auth_failures = 0
    delay = 2.0
    last_error = "no answer"
    while True:
        if not have_keys and console_keys is not None:
            keys = console_keys()
            if keys:
                add_host_keys(target.known_hosts_key, keys, target.known_hosts)
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
            except (HostKeyChangedError, HostKeyUnknownError):
                raise  # a wrong key is reported at once, not retried into a timeout
            except paramiko.AuthenticationException:
                # cloud-init installs the key a few seconds after sshd starts: retry briefly
                auth_failures += 1
                last_error = "key refused"
                if auth_failures >= 6:
                    raise SshAuthError(
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
            raise SshTimeoutError(
                f"SSH login did not succeed before the timeout (last: {last_error})",
                "the instance may still be booting; run `dlenv up` again to keep waiting, "
                "or raise --ssh-timeout",
                host=target.label,
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 10)
