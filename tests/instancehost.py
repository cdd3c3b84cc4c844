"""A systemd host container standing in for one EC2 instance that moto launched.

moto launches nothing real, so the tests and benchmarks that drive the whole CLI wire each
environment to a container: dlenv's private key for the environment is the container's
authorized key, SSH goes through the documented `ssh_proxy_command` setting (a relay to the
container's port, where users put SSM or a bastion), and moto's console output carries the
container's host keys (set by the caller with `console_with_host_keys`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from harness import hosts

RELAY = Path(__file__).resolve().parent / "e2e" / "relay.py"


def wire(state_dir: Path, host: hosts.TestHost, name: str) -> dict[str, str]:
    """Put the host's key in place as environment `name`'s key; return the env vars to add."""
    keys = state_dir / "keys"
    keys.mkdir(parents=True, mode=0o700, exist_ok=True)
    for suffix in ("", ".pub"):
        shutil.copy(host.key.with_suffix(suffix), keys / f"dlenv-{name}{suffix}")
    (keys / f"dlenv-{name}").chmod(0o600)
    return {
        "DLENV_SSH_USER": hosts.USER,
        "DLENV_SSH_PROXY_COMMAND": f"{sys.executable} {RELAY} 127.0.0.1 {host.port}",
        "DLENV_SSH_TIMEOUT": "180",
    }
