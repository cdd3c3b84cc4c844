"""The one trust store model, read the same way for paramiko and OpenSSH.

A target's host key is checked against `known_hosts_files(target)`:

- dlenv's own known_hosts in the state dir: console-read keys of EC2 environments (recorded under
  the alias `dlenv-NAME`, since their IP changes on every start) and the keys the user accepted
  for `--host` boxes. dlenv writes it atomically under a lock, and it must be well-formed: a
  malformed line is a StateFileError naming the file, the line and the fix;
- for `--host` targets, also the user's own `~/.ssh/known_hosts`, honoured read-only (hashed
  `|1|` entries and patterns included) and parsed leniently, as OpenSSH does: it is not ours.

The same list becomes OpenSSH's `UserKnownHostsFile "a" "b"` (see `dlenv.ssh.openssh`) and the
store the paramiko host-key policy consults (see `dlenv.ssh.policy`), so both clients agree.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dlenv.errors import StateFileError

if TYPE_CHECKING:
    from dlenv.ssh.target import SshTarget

Verdict = Literal["known", "changed", "unknown", "revoked"]


def dlenv_known_hosts() -> Path:
    """dlenv's known_hosts in the state dir (not created here: a missing file is empty)."""
    from dlenv.paths import state_dir

    return state_dir() / "known_hosts"


def user_known_hosts() -> Path:
    """The user's own known_hosts (read only)."""
    return Path.home() / ".ssh" / "known_hosts"


def known_hosts_files(target: SshTarget) -> list[Path]:
    """The files `target`'s host key is checked against, dlenv's first."""
    files = [p for p in (target.known_hosts, target.user_known_hosts) if p is not None]
    return list(dict.fromkeys(files))


@dataclass(frozen=True)
class Entry:
    """One key line: its host patterns, key type and base64 blob (`marker`: @revoked...)."""

    hosts: str
    keytype: str
    key: str
    marker: str | None = None

    def matches(self, name: str) -> bool:
        return host_matches(self.hosts, name)


def host_matches(field: str, name: str) -> bool:
    """OpenSSH's rule: a hashed `|1|salt|hash`, or comma-separated patterns with `!` negation."""
    if field.startswith("|1|"):
        try:
            _, _, salt_b64, digest_b64 = field.split("|", 3)
            salt = base64.b64decode(salt_b64)
            digest = base64.b64decode(digest_b64)
        except (ValueError, binascii.Error):
            return False
        return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)
    matched = False
    for pattern in field.split(","):
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if _wildcard(pattern).fullmatch(name.lower()):
            if negated:
                return False
            matched = True
    return matched


def _wildcard(pattern: str) -> re.Pattern[str]:
    """OpenSSH patterns know only `*` and `?` (`[` is literal, as in `[host]:2222`)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.compile("".join(parts))


_KEYTYPE = re.compile(r"^[a-z0-9][a-z0-9@._-]*$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def _valid_key(keytype: str, key: str) -> bool:
    """A key type word and a base64 blob (the blob itself is paramiko's/OpenSSH's to judge)."""
    return bool(_KEYTYPE.fullmatch(keytype) and _BASE64.fullmatch(key))


def parse(text: str, path: Path, *, strict: bool) -> list[Entry]:
    """Key entries of a known_hosts text; bad lines raise (strict) or are skipped (lenient)."""
    entries: list[Entry] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split()
        marker = fields.pop(0) if fields[0].startswith("@") else None
        if len(fields) >= 3 and _valid_key(fields[1], fields[2]) and "\0" not in stripped:
            entries.append(Entry(fields[0], fields[1], fields[2], marker))
        elif strict:
            raise StateFileError(
                f"known_hosts file {path} is malformed at line {number}: {stripped[:60]!r}",
                f"remove that line from {path} (dlenv records the key again on next use)",
            )
    return entries


def read_entries(path: Path, *, strict: bool = True) -> list[Entry]:
    from dlenv.statefile import read_text

    if strict:
        text = read_text(path, what="known_hosts file", fix=f"remove {path} (dlenv refills it)")
    else:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return []
    return parse(text or "", path, strict=strict)


def target_entries(target: SshTarget) -> list[Entry]:
    """Every entry in `target`'s stores that names its host (dlenv's file read strictly)."""
    found = []
    for path in known_hosts_files(target):
        strict = path != target.user_known_hosts
        found += [e for e in read_entries(path, strict=strict) if e.matches(target.known_hosts_key)]
    return found


def check(target: SshTarget, keytype: str, key_b64: str) -> Verdict:
    """What the stores say about the key the server presented (OpenSSH's semantics)."""
    entries = target_entries(target)
    if any(e.marker == "@revoked" and e.key == key_b64 for e in entries):
        return "revoked"
    plain = [e for e in entries if e.marker is None]
    if any(e.keytype == keytype and e.key == key_b64 for e in plain):
        return "known"
    if any(e.keytype == keytype for e in plain):
        return "changed"
    return "unknown"


def known_types(target: SshTarget) -> list[str]:
    """Key types recorded for the target (paramiko negotiates these first, as OpenSSH does)."""
    return list(dict.fromkeys(e.keytype for e in target_entries(target) if e.marker is None))


def is_known(target: SshTarget) -> bool:
    """Whether any store holds a key for the target (then OpenSSH can verify it alone)."""
    return bool(known_types(target))


def fingerprint(key_b64: str) -> str:
    """OpenSSH's `SHA256:...` fingerprint of a base64 key blob."""
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# -- dlenv's own file: read-modify-write under its lock, replaced atomically --------------------
def _rewrite(path: Path, change: Callable[[list[str]], list[str]], *, strict: bool = True) -> None:
    """Apply `change` to the file's lines under its lock; `strict=False` also copes with bytes
    that are not UTF-8 (kept as they are), for removals that must not fail."""
    from dlenv.statefile import atomic_write, file_lock, read_text

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with file_lock(path):
        if strict:
            text = read_text(path, what="known_hosts file", fix=f"remove {path}") or ""
        else:
            try:
                text = path.read_bytes().decode("utf-8", "surrogateescape")
            except FileNotFoundError:
                text = ""
        lines = change(text.splitlines())
        data = "".join(f"{ln}\n" for ln in lines).encode("utf-8", "surrogateescape")
        atomic_write(path, data, mode=0o600)


def _first_field(line: str) -> str:
    fields = line.split()
    if fields and fields[0].startswith("@") and len(fields) > 1:
        return fields[1]
    return fields[0] if fields else ""


def add_host_keys(name: str, keys: list[str], path: Path | None = None) -> None:
    """Record `keytype base64` lines for `name`, replacing what was recorded for it before."""
    path = path or dlenv_known_hosts()
    new = []
    for key in keys:
        parts = key.split()
        if len(parts) >= 2 and _valid_key(parts[0], parts[1]):
            new.append(f"{name} {parts[0]} {parts[1]}")
    if not new:
        return
    parse("\n".join(new), path, strict=True)

    def change(lines: list[str]) -> list[str]:
        parse("\n".join(lines), path, strict=True)  # refuse to build on a corrupt file
        return [ln for ln in lines if _first_field(ln) != name] + new

    _rewrite(path, change)


def remove_host(
    name: str, path: Path | None = None, warn: Callable[[str], None] | None = None
) -> bool:
    """Forget `name`'s keys. Tolerant on purpose: `down` must finish even when the file holds
    lines dlenv cannot parse (they are kept as they are, said in one line via `warn` or stderr;
    only `name`'s lines go)."""
    path = path or dlenv_known_hosts()
    if not path.exists():
        return False
    removed = False
    bad = 0

    def change(lines: list[str]) -> list[str]:
        nonlocal removed, bad
        kept = [ln for ln in lines if _first_field(ln) != name]
        removed = len(kept) != len(lines)
        for line in kept:
            try:
                line.encode("utf-8")
                parse(line, path, strict=True)
            except (UnicodeError, StateFileError):
                bad += 1
        return kept

    _rewrite(path, change, strict=False)
    if bad:
        message = (
            f"known_hosts file {path} has {bad} line(s) dlenv cannot read (kept as they are); "
            f"{name}'s keys were removed: fix or remove those lines"
        )
        if warn is not None:
            warn(message)
        else:
            import sys

            print(f"warning: {message}", file=sys.stderr)
    return removed


def known_keys(name: str, path: Path | None = None) -> list[str]:
    """`keytype base64` of what dlenv's known_hosts records for `name` (strict read)."""
    path = path or dlenv_known_hosts()
    return [f"{e.keytype} {e.key}" for e in read_entries(path) if e.hosts == name]


def has_keys(name: str, path: Path | None = None) -> bool:
    return bool(known_keys(name, path))
