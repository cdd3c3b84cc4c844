"""Where and how to reach a host over SSH: the contract between the cloud and provisioning layers.

The EC2 side produces an `SshTarget` for an environment (its IP, the AMI's login user, dlenv's key
for it, dlenv's own known_hosts and the configured ProxyCommand); `--host USER@HOST[:PORT]` produces
one for any SSH box. Everything that connects (provisioner, tunnel, `dlenv ssh`) takes one.

Every field is validated when the target is built: these values end up in an ssh_config file, on
an ssh(1) command line and in a remote shell, so a user name from an EC2 tag such as
`x\\nProxyCommand evil` must be refused here, once, before anything uses it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dlenv.config import LOGIN_NAME_RE
from dlenv.errors import DlenvError, UsageError

USER_RE = LOGIN_NAME_RE
"""The one login-name rule, shared with flags and config (`dlenv.config`)."""
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SPEC = re.compile(r"^(?:(?P<user>[^@]*)@)?(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?$")
_CONTROL = ("\n", "\r", "\0")


def _shown(value: str) -> str:
    return repr(value)


def check_user(value: str, source: str) -> str:
    """`value` when it is a plain login name; else UsageError naming where it came from."""
    if not isinstance(value, str) or not USER_RE.fullmatch(value):
        raise UsageError(
            f"{source} holds {_shown(str(value))}, which is not a valid user name",
            "a login name is letters, digits, '.', '_' or '-' (at most 32, not starting with "
            "'.' or '-')",
        )
    return value


def check_host(value: str, source: str) -> str:
    """`value` when it is a host name, an IPv4 or an IPv6 literal (without brackets)."""
    if isinstance(value, str) and not any(c in value for c in _CONTROL):
        if HOSTNAME_RE.fullmatch(value) and len(value) <= 253:
            return value
        try:
            ipaddress.IPv6Address(value)
            return value
        except ValueError:
            pass
    raise UsageError(
        f"{source} holds {_shown(str(value))}, which is not a host name or IP address",
        "give a DNS name (letters, digits, '-', '.'), an IPv4 address or an IPv6 literal",
    )


def check_alias(value: str, source: str) -> str:
    if not isinstance(value, str) or not ALIAS_RE.fullmatch(value):
        raise UsageError(
            f"{source} holds {_shown(str(value))}, which is not a valid host key alias",
            "use letters, digits, '.', '_' or '-'",
        )
    return value


def check_no_control(value: str, source: str) -> str:
    """Free text that ends up on one ssh_config line: no newline, CR or NUL."""
    if any(c in value for c in _CONTROL):
        raise UsageError(
            f"{source} holds {_shown(value)}, which contains a line break or NUL",
            "it must be one line (it becomes one ssh_config line)",
        )
    return value


@dataclass(frozen=True)
class SshTarget:
    host: str
    user: str
    port: int = 22
    key_file: Path | None = None
    known_hosts: Path | None = None
    """dlenv's known_hosts file: checked, and where dlenv records keys it was told to trust."""
    proxy_command: str | None = None
    """OpenSSH-style ProxyCommand; %h, %p and %r expand to host, port and user."""
    name: str | None = None
    """The dlenv environment name, when the target is one (used for display and logs)."""
    host_key_alias: str | None = None
    """Name the host key is recorded under instead of the address (`dlenv-<name>` for EC2
    environments, whose public IP changes on every start while the host key does not)."""
    user_known_hosts: Path | None = None
    """The user's own known_hosts (`--host` targets): honoured, never written."""

    def __post_init__(self) -> None:
        check_user(self.user, "the SSH user")
        check_host(self.host, "the SSH host")
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise UsageError(f"SSH port {self.port!r} is out of range", "use a port 1-65535")
        if self.host_key_alias is not None:
            check_alias(self.host_key_alias, "the host key alias")
        if self.proxy_command is not None:
            check_no_control(self.proxy_command, "ssh_proxy_command")
        if self.name is not None:
            check_no_control(self.name, "the environment name")
        for path in (self.key_file, self.known_hosts, self.user_known_hosts):
            if path is not None:
                check_no_control(str(path), "a path")

    @property
    def label(self) -> str:
        return self.name or (f"{self.host}:{self.port}" if self.port != 22 else self.host)

    @property
    def is_environment(self) -> bool:
        """A dlenv EC2 environment (keys come from its console), not a `--host` box."""
        return self.host_key_alias is not None

    @property
    def address(self) -> str:
        """The address as ssh and known_hosts write it (`[host]:port` for non-22 ports)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def known_hosts_key(self) -> str:
        """The host's name as written in known_hosts (the alias when there is one)."""
        return self.host_key_alias or self.address

    def expanded_proxy_command(self) -> str | None:
        if not self.proxy_command:
            return None
        return (
            self.proxy_command.replace("%h", self.host)
            .replace("%p", str(self.port))
            .replace("%r", self.user)
        )

    def with_(self, **changes: Any) -> SshTarget:
        return replace(self, **changes)

    # -- (de)serialisation for the background tunnel's record ----------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "user": self.user,
            "port": self.port,
            "key_file": str(self.key_file) if self.key_file else None,
            "known_hosts": str(self.known_hosts) if self.known_hosts else None,
            "proxy_command": self.proxy_command,
            "name": self.name,
            "host_key_alias": self.host_key_alias,
            "user_known_hosts": str(self.user_known_hosts) if self.user_known_hosts else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SshTarget:
        paths = ("key_file", "known_hosts", "user_known_hosts")
        values: dict[str, Any] = {
            k: (Path(v) if k in paths and v else v) for k, v in data.items() if v is not None
        }
        return cls(**values)

    @classmethod
    def parse(
        cls,
        spec: str,
        *,
        default_user: str = "ubuntu",
        key_file: str | Path | None = None,
        known_hosts: Path | None = None,
        proxy_command: str | None = None,
        user_known_hosts: Path | None = None,
    ) -> SshTarget:
        """Parse `USER@HOST[:PORT]` (the `--host` flag); every part strictly validated."""
        match = _SPEC.fullmatch(spec) if "\n" not in spec and "\r" not in spec else None
        if not match or not match["host"]:
            raise UsageError(
                f"--host {spec!r} is not USER@HOST[:PORT]",
                "e.g. --host ubuntu@10.1.2.3 or --host ubuntu@myhost:2222",
            )
        user = match["user"] if match["user"] is not None else default_user
        check_user(user, f"--host {spec!r}: the user part")
        raw_port = match["port"]
        if raw_port is not None and not raw_port.isdigit():
            raise UsageError(f"--host {spec!r}: port {raw_port!r} is not a number", "use 1-65535")
        port = int(raw_port or 22)
        if not 0 < port < 65536:
            raise UsageError(f"--host {spec!r}: port {port} is out of range", "use a port 1-65535")
        host = match["host"]
        if host.startswith("["):
            host = host[1:-1]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise UsageError(
                    f"--host {spec!r}: {host!r} in brackets is not an IPv6 address",
                    "e.g. --host me@[2001:db8::5]:22",
                ) from None
        check_host(host, f"--host {spec!r}: the host part")
        key = Path(key_file).expanduser() if key_file else None
        if key is not None and not key.is_file():
            raise UsageError(
                f"identity file {key} does not exist", "pass -i PATH to an existing private key"
            )
        return cls(
            host=host,
            user=user,
            port=port,
            key_file=key,
            known_hosts=known_hosts,
            proxy_command=proxy_command,
            user_known_hosts=user_known_hosts,
        )


def from_host_flag(
    spec: str, identity: str | Path | None, proxy_command: str | None = None
) -> SshTarget:
    """The target of `--host USER@HOST[:PORT] [-i KEY]`: dlenv's known_hosts (written) plus the
    user's ~/.ssh/known_hosts (read only) as its trust stores."""
    from dlenv.ssh.known_hosts import dlenv_known_hosts, user_known_hosts

    return SshTarget.parse(
        spec,
        key_file=identity,
        known_hosts=dlenv_known_hosts(),
        proxy_command=proxy_command,
        user_known_hosts=user_known_hosts(),
    )


def environment_target(
    name: str,
    *,
    host: str | None,
    tag_user: str,
    ssh_user: str | None,
    key_file: Path | None,
    proxy_command: str | None,
) -> SshTarget:
    """The target of the EC2 environment `name`: the tag or `--ssh-user` login, its key, dlenv's
    known_hosts under the alias `dlenv-NAME` (its IP changes on every start, its key does not).

    The user comes from an EC2 tag anyone with tagging rights could have set, so it is checked
    here with its source named (it is written into the ssh config and reaches ssh's command line).
    """
    from dlenv.ssh.known_hosts import dlenv_known_hosts

    if ssh_user:
        user = check_user(ssh_user, "ssh_user (--ssh-user)")
    else:
        user = check_user(tag_user, f"EC2 tag dlenv:user of {name}")
    if not host:
        raise DlenvError(f"environment {name!r} has no IP address yet", "wait a moment and retry")
    check_host(host, f"the address EC2 reports for {name}")
    return SshTarget(
        host=host,
        user=user,
        key_file=key_file,
        known_hosts=dlenv_known_hosts(),
        proxy_command=check_no_control(proxy_command, "ssh_proxy_command")
        if proxy_command
        else None,
        name=name,
        host_key_alias=f"dlenv-{name}",
    )
