"""dlenv's own known_hosts and the `Host dlenv-<name>` entries that make `ssh dlenv-mybox` work.

Entries live in an include file in dlenv's state dir; the user's ~/.ssh/config only gains one
`Include` line (added once, at the top, where OpenSSH requires it). Host keys are always checked
(`StrictHostKeyChecking yes`) against dlenv's known_hosts, which dlenv fills from the instance's
console output or, failing that, on first use.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dlenv.ssh_target import SshTarget

MARK = "# added by dlenv: entries for dlenv environments"


def known_hosts_path() -> Path:
    from dlenv.paths import state_dir

    path = state_dir() / "known_hosts"
    path.touch(mode=0o600, exist_ok=True)
    return path


def include_path() -> Path:
    from dlenv.paths import state_dir

    return state_dir() / "ssh_config"


def user_ssh_config() -> Path:
    return Path(os.environ.get("DLENV_USER_SSH_CONFIG", Path.home() / ".ssh" / "config"))


def host_alias(name: str) -> str:
    return f"dlenv-{name}"


def _block(name: str, target: SshTarget) -> str:
    if target.known_hosts is None:
        target = target.with_(known_hosts=known_hosts_path())
    lines = [
        f"# dlenv:begin {name}",
        f"Host {host_alias(name)}",
        f"    HostName {target.host}",
        f"    User {target.user}",
    ]
    lines += [f"    {key} {value}" for key, value in target.openssh_options()]
    lines.append(f"# dlenv:end {name}")
    return "\n".join(lines) + "\n"


def _strip(text: str, name: str) -> str:
    pattern = re.compile(
        rf"# dlenv:begin {re.escape(name)}\n.*?# dlenv:end {re.escape(name)}\n", re.S
    )
    return pattern.sub("", text)


def write_entry(name: str, target: SshTarget) -> Path:
    """Add or replace the entry for `name`; make sure the user's ssh config includes our file."""
    path = include_path()
    text = path.read_text() if path.is_file() else ""
    path.write_text(_strip(text, name) + _block(name, target))
    os.chmod(path, 0o600)
    ensure_include()
    return path


def remove_entry(name: str) -> bool:
    path = include_path()
    if not path.is_file():
        return False
    text = path.read_text()
    stripped = _strip(text, name)
    path.write_text(stripped)
    return stripped != text


def has_entry(name: str) -> bool:
    path = include_path()
    return path.is_file() and f"# dlenv:begin {name}\n" in path.read_text()


def ensure_include() -> None:
    config = user_ssh_config()
    line = f"Include {include_path()}"
    text = config.read_text() if config.is_file() else ""
    if line in text.splitlines():
        return
    config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    config.write_text(f"{MARK}\n{line}\n\n{text}")
    os.chmod(config, 0o600)


# -- known_hosts ---------------------------------------------------------------------------
def add_host_keys(host_key_name: str, keys: list[str]) -> None:
    """Record `keytype base64` lines for a host, replacing what was recorded for it before."""
    remove_host(host_key_name)
    path = known_hosts_path()
    with path.open("a") as fh:
        for key in keys:
            parts = key.split()
            if len(parts) >= 2:
                fh.write(f"{host_key_name} {parts[0]} {parts[1]}\n")


def remove_host(host_key_name: str) -> None:
    path = known_hosts_path()
    kept = [ln for ln in path.read_text().splitlines() if ln.split(" ", 1)[0] != host_key_name]
    path.write_text("".join(f"{ln}\n" for ln in kept))


def known_keys(host_key_name: str) -> list[str]:
    path = known_hosts_path()
    return [
        ln.split(" ", 1)[1]
        for ln in path.read_text().splitlines()
        if ln.split(" ", 1)[0] == host_key_name
    ]
