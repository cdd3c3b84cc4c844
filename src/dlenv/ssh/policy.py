"""THE host-key policy: one decision for every paramiko connection dlenv makes, and (through
`verify_host_key`) for every OpenSSH call to a box whose key is not recorded yet.

paramiko is given an empty host-key table, so every server key reaches `missing_host_key`, which
decides with `dlenv.ssh.known_hosts.check` over the target's stores (the same files OpenSSH is
pointed at):

- known (any store): accepted;
- changed (a different key of the same type recorded) or revoked: HostKeyChangedError, always;
- unknown: recorded in dlenv's known_hosts when the caller trusts new keys (`--trust-new-host-key`,
  or an EC2 environment whose console had no keys after the wait, as before), said in one line;
  else, for a `--host` box on a terminal, shown with its SHA256 fingerprint and asked about like
  OpenSSH does; else refused with HostKeyUnknownError naming `--trust-new-host-key`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

import paramiko

from dlenv.errors import HostKeyChangedError, HostKeyUnknownError
from dlenv.ssh import known_hosts
from dlenv.ssh.target import SshTarget

Say = Callable[[str], None]
_PROMPT_LOCK = threading.Lock()

# paramiko's transport thread logs a dropped link (a ProxyCommand that exited, a host that
# rebooted) at ERROR with a traceback; with no handler configured Python prints it to stderr.
# dlenv reports those failures itself as typed one-line errors, so paramiko's own log is kept
# out of the user's terminal unless the application configures logging (`--debug`).
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def interactive() -> bool:
    """OpenSSH asks only when it can: stdin and stderr are both terminals."""
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def ask_yes_no(question: str, fp: str) -> bool:
    """OpenSSH's prompt: `yes`, `no`, or the fingerprint itself (counts as yes)."""
    sys.stderr.write(question)
    sys.stderr.flush()
    while True:
        answer = sys.stdin.readline()
        if not answer:
            return False
        answer = answer.strip()
        if answer.lower() == "yes" or answer == fp:
            return True
        if answer.lower() == "no":
            return False
        sys.stderr.write("Please type 'yes', 'no' or the fingerprint: ")
        sys.stderr.flush()


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Decide on the key a server presented (see the module docstring)."""

    def __init__(
        self,
        target: SshTarget,
        *,
        trust_new: bool = False,
        say: Say | None = None,
        ask: bool | None = None,
        confirm: Callable[[str, str], bool] = ask_yes_no,
    ) -> None:
        self.target = target
        self.trust_new = trust_new
        self.say = say
        self.ask = (not target.is_environment and interactive()) if ask is None else ask
        self.confirm = confirm
        self.recorded: str | None = None
        """`NAME TYPE SHA256:...` of a key this policy recorded, for the caller to report."""

    def missing_host_key(self, client: Any, hostname: str, key: paramiko.PKey) -> None:
        self.decide(key.get_name(), key.get_base64())

    def decide(self, keytype: str, key_b64: str) -> None:
        t = self.target
        name = t.known_hosts_key
        fp = known_hosts.fingerprint(key_b64)
        verdict = known_hosts.check(t, keytype, key_b64)
        if verdict == "known":
            return
        if verdict in {"changed", "revoked"}:
            stores = ", ".join(str(p) for p in known_hosts.known_hosts_files(t))
            raise HostKeyChangedError(
                f"HOST KEY CHANGED for {name} (host key mismatch: the server presented "
                f"{keytype} {fp}, "
                + ("a revoked key)" if verdict == "revoked" else "not the recorded key)"),
                f"if the machine was rebuilt, remove its old entry (`ssh-keygen -R '{name}' -f "
                f"FILE`, FILE one of {stores}); otherwise someone may be intercepting the "
                "connection",
                host=t.label,
            )
        if t.known_hosts is None:
            raise HostKeyUnknownError(
                f"unknown host key for {name} ({keytype} {fp}) and no known_hosts to record it",
                host=t.label,
            )
        if not self.trust_new and self.ask:
            with _PROMPT_LOCK:
                question = (
                    f"The authenticity of host '{name}' can't be established.\n"
                    f"{_short(keytype)} key fingerprint is {fp}.\n"
                    "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
                )
                accepted = self.confirm(question, fp)
            if not accepted:
                raise HostKeyUnknownError(
                    f"host key of {name} ({keytype} {fp}) was not accepted",
                    "nothing was recorded; connect again once you have checked the fingerprint",
                    host=t.label,
                )
        elif not self.trust_new:
            raise HostKeyUnknownError(
                f"unknown host key for {name} ({keytype} {fp})",
                "verify the fingerprint out of band, then run the command on a terminal (you are "
                f"asked) or re-run it with --trust-new-host-key (recorded in {t.known_hosts})",
                host=t.label,
            )
        known_hosts.add_host_keys(name, [f"{keytype} {key_b64}"], t.known_hosts)
        self.recorded = f"{name} {keytype} {fp}"
        if self.say is not None:
            self.say(f"new host key recorded in {t.known_hosts}: {self.recorded}")


def _short(keytype: str) -> str:
    return {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA"}.get(
        keytype, "ECDSA" if keytype.startswith("ecdsa") else keytype
    )


def prefer_known_types(transport: paramiko.Transport, target: SshTarget) -> None:
    """Negotiate a key type the stores know first, as OpenSSH does, so a host known by its ECDSA
    key is not reported unknown because paramiko happened to pick ED25519."""
    known = known_hosts.known_types(target)
    opts = transport.get_security_options()
    wanted = []
    for keytype in known:
        wanted += ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if keytype == "ssh-rsa" else [keytype]
    first = [k for k in wanted if k in opts.key_types]
    if first:
        opts.key_types = tuple(first + [k for k in opts.key_types if k not in first])


def transport_factory(target: SshTarget) -> Callable[..., paramiko.Transport]:
    """paramiko's `transport_factory` hook: a Transport that prefers the known key types."""

    def make(*args: Any, **kwargs: Any) -> paramiko.Transport:
        transport = paramiko.Transport(*args, **kwargs)
        prefer_known_types(transport, target)
        return transport

    return make


def open_socket(target: SshTarget, timeout: float) -> Any:
    """A socket to the target's sshd: through its ProxyCommand, or TCP."""
    import socket

    from dlenv.errors import SshTimeoutError, SshUnreachableError

    proxy = target.expanded_proxy_command()
    if proxy:
        return paramiko.ProxyCommand(proxy)
    try:
        return socket.create_connection((target.host, target.port), timeout=timeout)
    except TimeoutError:
        raise SshTimeoutError(
            f"connecting to {target.host}:{target.port} timed out",
            "check the address, that sshd runs, and firewalls / security groups",
            host=target.label,
        ) from None
    except OSError as exc:
        raise SshUnreachableError(
            f"cannot reach {target.host}:{target.port} over SSH: {exc.strerror or exc}",
            "check the address, that sshd runs, and firewalls / security groups",
            host=target.label,
        ) from None


def verify_host_key(
    target: SshTarget, *, trust_new: bool = False, say: Say | None = None, timeout: float = 20
) -> str | None:
    """Fetch the server's host key (key exchange only, no login) and apply the policy.

    Used before OpenSSH calls, so that ssh(1) with StrictHostKeyChecking and the same files finds
    the key the user accepted. Returns what was recorded (None when the key was known already).
    """
    from dlenv.errors import SshUnreachableError

    sock = open_socket(target, timeout)
    transport = paramiko.Transport(sock)
    try:
        prefer_known_types(transport, target)
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SshUnreachableError(
                f"no SSH server answered on {target.host}:{target.port} ({exc or type(exc).__name__})",
                "check the address, that sshd runs, and firewalls / security groups",
                host=target.label,
            ) from None
        key = transport.get_remote_server_key()
        policy = HostKeyPolicy(target, trust_new=trust_new, say=say)
        policy.decide(key.get_name(), key.get_base64())
        return policy.recorded
    finally:
        transport.close()
