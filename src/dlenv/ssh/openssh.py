"""The OpenSSH side of the one SSH layer: options, argv, running a command, reading failures.

`options(target)` is the single list of ssh_config options that reaches a target; it becomes both
the `-o` flags of every ssh(1) call dlenv makes (tunnel, `dlenv ssh --host`, `run_remote`) and the
`Host dlenv-NAME` block of the ssh config include, so `ssh dlenv-mybox` and dlenv's own calls can
never disagree. Values are rendered by ssh_config(5) rules here, once (`render`).

OpenSSH reports failures as text on stderr with exit code 255; `classify` turns that text into a
typed SshError exactly once, here. Nothing above this module looks at ssh's messages.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dlenv.errors import (
    DlenvError,
    HostKeyChangedError,
    HostKeyUnknownError,
    SshAuthError,
    SshError,
    SshTimeoutError,
    SshUnreachableError,
    UsageError,
)
from dlenv.ssh.command import Word, join

if TYPE_CHECKING:
    from dlenv.ssh.target import SshTarget

Option = tuple[str, list[str]]

TOKEN_KEYS = frozenset(
    k.lower()
    for k in (
        "IdentityFile",
        "UserKnownHostsFile",
        "CertificateFile",
        "ControlPath",
        "IdentityAgent",
        "KnownHostsCommand",
        "LocalCommand",
        "RemoteCommand",
        "RevokedHostKeys",
    )
)
"""Keys whose values ssh expands `%` tokens in: a literal `%` there must be written `%%`."""

_NEEDS_QUOTES = re.compile(r"[\s#'=]")
_UNREPRESENTABLE = ("\n", "\r", "\0", '"', "\\")


def render_word(key: str, word: str) -> str:
    """One value word as ssh_config(5) reads it back: `%` escaped where tokens expand, double
    quotes when it holds spaces or `#`; refused when no quoting can carry it (`"`, `\\`, EOL)."""
    bad = next((c for c in _UNREPRESENTABLE if c in word), None)
    if bad is not None:
        raise UsageError(
            f"{key} value {word!r} contains {bad!r}, which an ssh config cannot hold",
            "use a path or name without quotes, backslashes or line breaks",
        )
    if key.lower() in TOKEN_KEYS:
        word = word.replace("%", "%%")
    if not word or _NEEDS_QUOTES.search(word):
        word = f'"{word}"'
    return word


def render(key: str, values: list[str]) -> str:
    """The value part of a `Key value` line. ProxyCommand takes the rest of the line verbatim
    (its `%h %p` tokens are the user's), so it only has to be one line."""
    if key.lower() == "proxycommand":
        [command] = values
        if any(c in command for c in ("\n", "\r", "\0")):
            raise UsageError(
                f"ProxyCommand {command!r} contains a line break or NUL",
                "set ssh_proxy_command to a single-line command",
            )
        return command
    return " ".join(render_word(key, v) for v in values)


def options(target: SshTarget) -> list[Option]:
    """ssh_config options reaching `target`, host keys always verified against its stores."""
    from dlenv.ssh.known_hosts import known_hosts_files

    opts: list[Option] = [("Port", [str(target.port)]), ("StrictHostKeyChecking", ["yes"])]
    if target.key_file:
        opts += [("IdentityFile", [str(target.key_file)]), ("IdentitiesOnly", ["yes"])]
    files = known_hosts_files(target)
    if files:
        # the user's own known_hosts is read, never written (no UpdateHostKeys, strict checking)
        opts += [
            ("UserKnownHostsFile", [str(f) for f in files]),
            ("GlobalKnownHostsFile", ["none"]),
            ("UpdateHostKeys", ["no"]),
        ]
    if target.host_key_alias:
        opts.append(("HostKeyAlias", [target.host_key_alias]))
    if target.proxy_command:
        opts.append(("ProxyCommand", [target.proxy_command]))
    return [*opts, ("ServerAliveInterval", ["15"]), ("ServerAliveCountMax", ["3"])]


def ssh_options(target: SshTarget, *, batch: bool = True) -> list[str]:
    """ssh(1) arguments that reach `target` (non-interactively unless `batch=False`: an
    interactive `dlenv ssh` may ask for a key's passphrase), ending with `-- HOST`."""
    opts = [*options(target), ("ConnectTimeout", ["20"])]
    if batch:
        opts.append(("BatchMode", ["yes"]))
    args = [a for key, values in opts for a in ("-o", f"{key}={render(key, values)}")]
    return [*args, "-l", target.user, "--", target.host]


def ssh_binary() -> str:
    binary = shutil.which("ssh")
    if binary is None:
        raise DlenvError(
            "no ssh client found", "install OpenSSH (e.g. `apt-get install openssh-client`)"
        )
    return binary


def ssh_argv(target: SshTarget, remote: Sequence[Word] | None = None, *pre: str) -> list[str]:
    """The full ssh command line; `remote` (argv) is quoted into one remote command by `join`."""
    if remote:
        return ssh_line_argv(target, join(remote), *pre)
    return [ssh_binary(), *pre, *ssh_options(target)]


def ssh_line_argv(target: SshTarget, line: str, *pre: str) -> list[str]:
    """The full ssh command line running `line`, a remote shell command already built with
    `dlenv.ssh.command` (`join`/`chain`/`quote` around its words), for the callers whose remote
    command is more than one argv: `cd ~ && ...`, `if ...; fi`, a pipeline."""
    return [ssh_binary(), *pre, *ssh_options(target), line]


def prepare(
    target: SshTarget, *, trust_new: bool = False, say: Callable[[str], None] | None = None
) -> None:
    """Before OpenSSH talks to a `--host` box whose key no store knows yet, run dlenv's host-key
    policy through paramiko (ask on a TTY, refuse with the hint, or record on --trust-new-host-key)
    so that OpenSSH, reading the same files with StrictHostKeyChecking, agrees."""
    if target.is_environment:
        return
    from dlenv.ssh.known_hosts import is_known

    if is_known(target):
        return
    from dlenv.ssh.policy import verify_host_key

    verify_host_key(target, trust_new=trust_new, say=say)


def run_remote(
    target: SshTarget, remote: Sequence[Word], *, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run argv `remote` on the target (captured); ssh's own failures become typed SshErrors."""
    prepare(target)
    return run_captured(
        target,
        ssh_argv(target, remote),
        timeout=timeout,
        timed_out=(
            f"the command over SSH did not finish within {timeout:.0f}s",
            "check that the machine is responsive (`dlenv status`) and retry",
        ),
    )


def run_captured(
    target: SshTarget, argv: list[str], *, timeout: float, timed_out: tuple[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run the ssh(1) command line `argv` to `target` (stdin closed, output captured): ssh's
    own failures (exit 255) raise the typed SshError (`classify`), no end within `timeout`
    seconds raises SshTimeoutError with the caller's (message, hint) `timed_out`; any other
    exit is the remote command's, for the caller to judge."""
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        message, hint = timed_out
        raise SshTimeoutError(message, hint, host=target.label) from None
    if proc.returncode == 255:
        raise classify(target, proc.stderr)
    return proc


def classify(target: SshTarget, stderr: str) -> SshError:
    """The typed error for ssh's exit 255 (the one place that reads OpenSSH's messages)."""
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "ssh failed"
    where = target.known_hosts_key
    stores = ", ".join(str(p) for p in _stores(target)) or "dlenv's known_hosts"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "has changed and you have" in stderr:
        return HostKeyChangedError(
            f"the host key of {where} has CHANGED since it was recorded",
            f"if the machine was rebuilt, remove its entry from {stores}; "
            "otherwise someone may be intercepting the connection",
            host=target.label,
        )
    if "Host key verification failed" in stderr or "host key is known" in stderr:
        return HostKeyUnknownError(
            f"the host key of {where} is not known to dlenv or your known_hosts",
            "verify its fingerprint, then run the command again on a terminal (you are asked) "
            "or with --trust-new-host-key",
            host=target.label,
        )
    if "Permission denied" in stderr or "Too many authentication failures" in stderr:
        return SshAuthError(
            f"SSH login as {target.user} was refused",
            "check the user and the key (-i KEY; the key must be in authorized_keys)",
            host=target.label,
        )
    if "timed out" in stderr.lower():
        return SshTimeoutError(
            f"SSH to {target.host}:{target.port} timed out: {last}",
            "check that the machine runs (`dlenv status`), your network and firewalls",
            host=target.label,
        )
    return SshUnreachableError(
        f"cannot reach {target.host}:{target.port} over SSH: {last}",
        "check that the machine runs (`dlenv status`) and your network",
        host=target.label,
    )


def _stores(target: SshTarget) -> list[object]:
    from dlenv.ssh.known_hosts import known_hosts_files

    return [p for p in known_hosts_files(target) if p != target.user_known_hosts]
