"""Where and how to reach a host over SSH: the contract between the cloud and provisioning layers.

The EC2 side produces an `SshTarget` for an environment (its IP, the AMI's login user, dlenv's key
for it, dlenv's own known_hosts and the configured ProxyCommand); `--host USER@HOST[:PORT]` produces
one for any SSH box. Everything that connects (provisioner, tunnel, `dlenv ssh`) takes one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from dlenv.errors import UsageError

_SPEC = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>\[[0-9A-Fa-f:]+\]|[A-Za-z0-9._-]+)(?::(?P<port>\d+))?$"
)


@dataclass(frozen=True)
class SshTarget:
    host: str
    user: str
    port: int = 22
    key_file: Path | None = None
    known_hosts: Path | None = None
    """dlenv's known_hosts file; host keys are always verified against it (never disabled)."""
    proxy_command: str | None = None
    """OpenSSH-style ProxyCommand; %h, %p and %r expand to host, port and user."""
    name: str | None = None
    """The dlenv environment name, when the target is one (used for display and logs)."""
    host_key_alias: str | None = None
    """Name the host key is recorded under instead of the address (`dlenv-<name>` for EC2
    environments, whose public IP changes on every start while the host key does not)."""

    @property
    def label(self) -> str:
        return self.name or (f"{self.host}:{self.port}" if self.port != 22 else self.host)

    @property
    def known_hosts_key(self) -> str:
        """The host's name as written in known_hosts (`[host]:port` for non-22 ports)."""
        if self.host_key_alias:
            return self.host_key_alias
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def expanded_proxy_command(self) -> str | None:
        if not self.proxy_command:
            return None
        return (
            self.proxy_command.replace("%h", self.host)
            .replace("%p", str(self.port))
            .replace("%r", self.user)
        )

    def openssh_options(self) -> list[tuple[str, str]]:
        """ssh(1) options reaching this target, host-key checking always on.

        The one source for both the tunnel's `ssh -o` flags and the `Host dlenv-NAME` entry in
        dlenv's ssh config, so `ssh dlenv-mybox` and dlenv's own connections never disagree.
        """
        opts = [("Port", str(self.port)), ("StrictHostKeyChecking", "yes")]
        if self.key_file:
            opts += [("IdentityFile", str(self.key_file)), ("IdentitiesOnly", "yes")]
        if self.known_hosts:
            opts.append(("UserKnownHostsFile", str(self.known_hosts)))
        if self.host_key_alias:
            opts.append(("HostKeyAlias", self.host_key_alias))
        if self.proxy_command:
            opts.append(("ProxyCommand", self.proxy_command))
        return [*opts, ("ServerAliveInterval", "15"), ("ServerAliveCountMax", "3")]

    def with_(self, **changes: object) -> SshTarget:
        return replace(self, **changes)

    @classmethod
    def parse(
        cls,
        spec: str,
        *,
        default_user: str = "ubuntu",
        key_file: str | Path | None = None,
        known_hosts: Path | None = None,
        proxy_command: str | None = None,
    ) -> SshTarget:
        """Parse `USER@HOST[:PORT]` (the `--host` flag)."""
        match = _SPEC.match(spec.strip())
        if not match:
            raise UsageError(
                f"--host {spec!r} is not USER@HOST[:PORT]",
                "e.g. --host ubuntu@10.1.2.3 or --host ubuntu@myhost:2222",
            )
        port = int(match["port"] or 22)
        if not 0 < port < 65536:
            raise UsageError(f"--host {spec!r}: port {port} is out of range", "use a port 1-65535")
        host = match["host"].strip("[]")
        key = Path(key_file).expanduser() if key_file else None
        if key is not None and not key.is_file():
            raise UsageError(
                f"identity file {key} does not exist", "pass -i PATH to an existing private key"
            )
        return cls(
            host=host,
            user=match["user"] or default_user,
            port=port,
            key_file=key,
            known_hosts=known_hosts,
            proxy_command=proxy_command,
        )


def load_host_keys(host_keys: object, target: SshTarget) -> None:
    """Load `target.known_hosts` into a paramiko HostKeys, honouring `host_key_alias`.

    paramiko looks host keys up by the address it connects to; an EC2 environment's keys are
    recorded under its stable alias (`dlenv-<name>`), so they are mapped onto the address here.
    """
    if target.known_hosts is None or not target.known_hosts.is_file():
        return
    host_keys.load(str(target.known_hosts))  # type: ignore[attr-defined]
    if target.host_key_alias:
        address = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
        for keytype, key in (host_keys.lookup(target.host_key_alias) or {}).items():  # type: ignore[attr-defined]
            host_keys.add(address, keytype, key)  # type: ignore[attr-defined]
