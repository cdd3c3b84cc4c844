"""The ssh_config writer: `Host dlenv-<name>` entries that make `ssh dlenv-mybox` (and VS Code's
Remote-SSH) work, with exactly the options dlenv's own connections use (`dlenv.ssh.openssh`).

Entries live in an include file in dlenv's state dir, one `# dlenv:begin NAME` ... `# dlenv:end
NAME` block each; the user's ~/.ssh/config only gains one quoted `Include "PATH"` line (added once,
at the top, where OpenSSH requires it; macOS's state dir has a space in its path).

Both files are read-modify-written under a lock and replaced atomically, so ten parallel `dlenv
up`s never lose each other's entries, and every value is validated and quoted by ssh_config(5)
rules before anything is written: a value no quoting can carry is refused with one line and the
files stay as they were. A malformed include is a StateFileError naming the fix, except when
removing an entry (`dlenv down` must finish): then the entry's lines are removed anyway, said in
one line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from dlenv.errors import StateFileError, UsageError
from dlenv.ssh.openssh import options, render
from dlenv.ssh.target import ALIAS_RE, SshTarget

HEADER = "# dlenv: entries for dlenv environments (managed by dlenv; edits are replaced)"
MARK = "# added by dlenv: entries for dlenv environments"
_BEGIN = re.compile(r"^# dlenv:begin (\S+)$")
_END = re.compile(r"^# dlenv:end (\S+)$")
Say = Callable[[str], None]


def include_path() -> Path:
    from dlenv.paths import state_dir

    return state_dir() / "ssh_config"


def user_ssh_config() -> Path:
    return Path(os.environ.get("DLENV_USER_SSH_CONFIG", Path.home() / ".ssh" / "config"))


def host_alias(name: str) -> str:
    alias = f"dlenv-{name}"
    if not ALIAS_RE.fullmatch(alias):
        raise UsageError(
            f"environment name {name!r} cannot be an ssh host alias",
            "use letters, digits, '.', '_' or '-'",
        )
    return alias


def block(name: str, target: SshTarget) -> str:
    """The entry for `name` (validated and quoted; raises UsageError before anything is written)."""
    if target.known_hosts is None:
        from dlenv.ssh.known_hosts import dlenv_known_hosts

        target = target.with_(known_hosts=dlenv_known_hosts())
    lines = [
        f"# dlenv:begin {name}",
        f"Host {host_alias(name)}",
        f"    HostName {render('HostName', [target.host])}",
        f"    User {render('User', [target.user])}",
    ]
    lines += [f"    {key} {render(key, values)}" for key, values in options(target)]
    lines.append(f"# dlenv:end {name}")
    return "\n".join(lines) + "\n"


def parse_include(text: str, path: Path) -> tuple[list[str], dict[str, str]]:
    """(lines outside any block, {name: block text}); unbalanced markers raise StateFileError."""
    outside: list[str] = []
    blocks: dict[str, str] = {}
    current: str | None = None
    body: list[str] = []
    fix = f"remove {path} (dlenv writes the entries again on `dlenv ssh NAME` or `dlenv start`)"
    for number, line in enumerate(text.splitlines(), 1):
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            if current is not None:
                raise StateFileError(
                    f"ssh config include {path} is malformed at line {number}: "
                    f"entry {current!r} has no end marker",
                    fix,
                )
            current, body = begin.group(1), [line]
        elif end:
            if current != end.group(1):
                raise StateFileError(
                    f"ssh config include {path} is malformed at line {number}: "
                    f"an end marker for {end.group(1)!r} without its begin",
                    fix,
                )
            body.append(line)
            blocks[end.group(1)] = "\n".join(body) + "\n"
            current = None
        elif current is not None:
            body.append(line)
        elif line.strip().startswith("#") and line.strip() != HEADER:
            outside.append(line)
        elif line.strip() and line.strip() != HEADER:
            raise StateFileError(
                f"ssh config include {path} is malformed at line {number}: "
                f"{line.strip()[:40]!r} is outside any dlenv entry",
                fix,
            )
    if current is not None:
        raise StateFileError(
            f"ssh config include {path} is malformed: entry {current!r} has no end marker", fix
        )
    return outside, blocks


def _render_include(outside: list[str], blocks: dict[str, str]) -> str:
    return "".join(
        [HEADER + "\n", *(f"{ln}\n" for ln in outside), *(blocks[n] for n in sorted(blocks))]
    )


def _read(path: Path) -> str:
    from dlenv.statefile import read_text

    return (
        read_text(path, what="ssh config include", fix=f"remove {path} (dlenv writes it again)")
        or ""
    )


def write_entry(name: str, target: SshTarget) -> Path:
    """Add or replace the entry for `name`; make sure the user's ssh config includes our file."""
    from dlenv.statefile import atomic_write, file_lock

    path = include_path()
    entry = block(name, target)
    include_line(path)  # refuse an unrepresentable path before writing anything
    with file_lock(path):
        outside, blocks = parse_include(_read(path), path)
        blocks[name] = entry
        atomic_write(path, _render_include(outside, blocks), mode=0o600)
    ensure_include()
    return path


def remove_entry(name: str, warn: Say | None = None) -> bool:
    """Remove `name`'s entry. Never fails on a malformed include (`down` must finish): the
    entry's lines are removed anyway and `warn` (or stderr) gets one line about the file."""
    from dlenv.statefile import atomic_write, file_lock

    path = include_path()
    if not path.exists():
        return False
    with file_lock(path):
        try:
            raw = path.read_bytes()
        except OSError as exc:
            _warn(warn, f"could not read {path} ({exc.strerror}); remove its {name} entry by hand")
            return False
        text = raw.decode("utf-8", "surrogateescape")
        try:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise StateFileError(
                    f"ssh config include {path} is corrupt (not UTF-8 text)",
                    f"remove {path} (dlenv writes it again)",
                ) from None
            outside, blocks = parse_include(text, path)
        except StateFileError as exc:
            kept, removed = _strip_leniently(text, name)
            if removed:
                atomic_write(path, kept.encode("utf-8", "surrogateescape"), mode=0o600)
            _warn(warn, f"{exc.message}; removed {name}'s entry anyway ({exc.hint})")
            return removed
        if name not in blocks:
            return False
        del blocks[name]
        atomic_write(path, _render_include(outside, blocks), mode=0o600)
        return True


def _strip_leniently(text: str, name: str) -> tuple[str, bool]:
    """Drop the lines from `# dlenv:begin NAME` to its end marker (or the next begin / EOF)."""
    kept: list[str] = []
    inside = removed = False
    for line in text.splitlines():
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin and begin.group(1) == name:
            inside = removed = True
            continue
        if inside:
            if end and end.group(1) == name:
                inside = False
                continue
            if not begin:
                continue
            inside = False
        kept.append(line)
    return "".join(f"{ln}\n" for ln in kept), removed


def _warn(warn: Say | None, message: str) -> None:
    if warn is not None:
        warn(message)
    else:
        import sys

        print(f"warning: {message}", file=sys.stderr)


def has_entry(name: str) -> bool:
    """Whether the include holds `name`'s entry (a plain text check: never raises)."""
    try:
        text = include_path().read_bytes().decode("utf-8", "replace")
    except OSError:
        return False
    return f"# dlenv:begin {name}\n" in text


# -- the user's ~/.ssh/config ------------------------------------------------------------------
def include_line(path: Path) -> str:
    """`Include "PATH"`; Include also expands globs, so a path with `*?[` is refused too."""
    text = str(path)
    bad = next((c for c in ('"', "\\", "\n", "\r", "\0", "*", "?", "[") if c in text), None)
    if bad is not None:
        raise UsageError(
            f"dlenv's state dir {path.parent} contains {bad!r}, which an ssh Include cannot hold",
            "set DLENV_STATE_DIR to a path without quotes, backslashes, wildcards or line breaks",
        )
    return f'Include "{text}"'


def ensure_include() -> None:
    """Add the Include line (once, at the top) to the user's ssh config, under its lock."""
    from dlenv.statefile import atomic_write, locked, locks_dir, read_text

    config = user_ssh_config()
    if config.is_symlink():  # dotfile managers link it: write where the link points
        config = config.resolve()
    ours = include_path()
    line = include_line(ours)
    config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # the lock lives in dlenv's state dir: nothing but the Include line is added to ~/.ssh
    with locked(locks_dir() / "user-ssh-config.lock", what=str(config), timeout=60):
        text = (
            read_text(config, what="ssh config", fix=f"check {config} (it must be UTF-8 text)")
            or ""
        )
        lines = text.splitlines()
        if line in (ln.strip() for ln in lines):
            return
        # an older dlenv wrote the line unquoted: replace it, keep everything else as it is
        old = {f"Include {ours}", MARK}
        kept = [ln for ln in lines if ln.strip() not in old]
        while kept and not kept[0].strip():
            kept.pop(0)
        body = "".join(f"{ln}\n" for ln in kept)
        atomic_write(config, f"{MARK}\n{line}\n\n{body}", mode=0o600)
