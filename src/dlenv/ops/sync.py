"""Work in and out of an environment: `dlenv sync` (rsync over dlenv's verified SSH) and the
`dlenv down` guard that refuses to destroy work that was never brought back.

Why rsync over the ssh config dlenv already writes: host keys are then checked exactly as by
every other dlenv connection (the `Host dlenv-NAME` block, or the same `-o` options for a
`--host` box: StrictHostKeyChecking=yes, dlenv's known_hosts), and rsync's own features do the
rest (`.gitignore` / `.dlenvignore` as dir-merge filters, progress, deletions only on request).

The remote work directory is the notebook user's `~/work` (stack.toml `[jupyter] work_dir`), the
same on every channel. A sync marker, `~/.local/state/dlenv/synced-down` on the host, is touched
after each `sync --down` (and by the seeding of the starter notebooks): `dlenv down` lists the
files under ~/work newer than it, so it can say exactly what would be lost.

Two rules keep work from being lost by a sync itself: `--update` in both directions (a file that
is newer on the receiving side is kept, never overwritten by an older copy) and no `--delete`
unless asked, and then only after listing what would go.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlenv.errors import DlenvError, SshError, UsageError

if TYPE_CHECKING:
    from dlenv.config import Settings
    from dlenv.ssh.target import SshTarget
    from dlenv.terminal import Terminal

MARKER = ".local/state/dlenv/synced-down"
"""The sync marker, relative to the notebook user's home (outside the work directory)."""
IGNORE_FILE = ".dlenvignore"
TAG_WORK = "dlenv:work"
"""Instance tag: `none` from launch until the environment is provisioned or receives a sync (no
work directory can hold anything yet), then `yes`. Absent on environments from older dlenv
versions: those are treated as holding work."""
SHOWN = 10
"""How many changed files `down` names before it says "and N more"."""

_RSYNC_INSTALL = (
    "install rsync: `sudo apt-get install rsync` (Debian/Ubuntu), `brew install rsync` (macOS), "
    "`sudo dnf install rsync` (Fedora)"
)
_NO_RSYNC, _NO_WORK, _MKDIR_FAILED = 42, 43, 44

# One constant script per remote action; values arrive as positional arguments ($1, $2, ...),
# quoted by dlenv.ssh.command.join, never interpolated into the script.
_PREPARE = r"""
command -v rsync >/dev/null 2>&1 || exit 42
w="$HOME/$1"; m="$HOME/$2"
mkdir -p "${m%/*}" || exit 44
if [ "$3" = up ]; then
  mkdir -p "$w" || exit 44
  # nothing changed on the host since the last sync down: the upload's files are copies of
  # local ones, so the marker may move past them once the upload is done
  if [ -e "$m" ]; then
    changed=$(cd "$w" && find . -name .ipynb_checkpoints -prune -o -type f -newer "$m" -print | head -n 1)
  else
    changed=$(cd "$w" && find . -name .ipynb_checkpoints -prune -o -type f -print | head -n 1)
  fi
  if [ -z "$changed" ]; then touch "$m.next"; else rm -f "$m.next"; fi
else
  [ -d "$w" ] || exit 43
  touch "$m.next"
fi
"""
_COMMIT_MARKER = r"""
m="$HOME/$1"
if [ -e "$m.next" ]; then mv -f "$m.next" "$m" && echo moved; fi
"""
_LIST_CHANGED = r"""
w="$HOME/$1"; m="$HOME/$2"
[ -d "$w" ] || exit 0
cd "$w" || exit 44
if [ -e "$m" ]; then set -- -newer "$m"; else set --; fi
find . -name .ipynb_checkpoints -prune -o -type f "$@" -print0
"""


def work_dir() -> str:
    """The work directory relative to the notebook user's home (stack.toml), `work` by default."""
    try:
        from dlenv.provision.manifest import load_stack

        value = load_stack().get("jupyter.work_dir")
    except (ImportError, KeyError):
        return "work"
    return str(value).strip("/") or "work"


# -- the local rsync -------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalRsync:
    binary: str
    version: tuple[int, int, int] | None
    """GNU rsync's version; None for openrsync (macOS) or an unreadable banner."""
    banner: str

    @property
    def progress_args(self) -> list[str]:
        """`--info=progress2` (one overall line) from GNU rsync 3.1; `--progress` (per file)
        before that; nothing for openrsync, which has neither."""
        if self.version is None:
            return []
        if self.version >= (3, 1, 0):
            return ["--info=progress2"]
        return ["--progress"]


def local_rsync() -> LocalRsync:
    """This machine's rsync, or one line naming how to install it."""
    binary = shutil.which("rsync")
    if binary is None:
        raise DlenvError("rsync is not installed on this machine", _RSYNC_INSTALL)
    try:
        banner = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        banner = ""
    return LocalRsync(binary, parse_version(banner), banner.splitlines()[0] if banner else "")


def parse_version(banner: str) -> tuple[int, int, int] | None:
    """GNU rsync's `rsync  version 3.2.7  protocol version 31`; None for openrsync."""
    if "openrsync" in banner:
        return None
    match = re.search(r"rsync\s+version\s+v?(\d+)\.(\d+)(?:\.(\d+))?", banner)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def rsh_command(argv: list[str]) -> str:
    """argv as rsync's `-e` value: rsync splits it on spaces itself, honouring single quotes
    (a quote inside is doubled), so paths with spaces (macOS's state dir) stay one word."""
    return " ".join("'" + word.replace("'", "''") + "'" for word in argv)


# -- the remote end ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Remote:
    """Where the work directory lives and how rsync's ssh reaches it."""

    target: SshTarget
    rsh: str
    """rsync's -e value: ssh with the verified options."""
    host: str
    """The host part of rsync's `HOST:PATH` (an ssh alias)."""
    label: str
    name: str | None = None
    """The environment name (None for a `--host` box)."""


def environment_remote(name: str, settings: Settings, terminal: Terminal) -> Remote:
    """A running environment: its `Host dlenv-NAME` block (refreshed: the IP changes on start)."""
    from dlenv.ops import lifecycle
    from dlenv.ssh import config, openssh

    lifecycle.validate_name(name)
    target = lifecycle.target_of_running(name, settings, terminal)
    config.write_entry(name, target)
    argv = [openssh.ssh_binary(), "-F", str(config.include_path())]
    argv += ["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"]
    return Remote(target, rsh_command(argv), config.host_alias(name), name, name)


def host_remote(
    spec: str,
    identity: str | None,
    settings: Settings,
    terminal: Terminal,
    *,
    trust_new: bool = False,
) -> Remote:
    """Any SSH box (`--host USER@HOST[:PORT] -i KEY`), its host key checked like `dlenv ssh
    --host`: the same option list, the real address as HostName behind a fixed alias."""
    from dlenv.ssh import openssh
    from dlenv.ssh.target import from_host_flag

    target = from_host_flag(spec, identity, settings.ssh_proxy_command)
    openssh.prepare(target, trust_new=trust_new, say=terminal.info)
    opts = [
        *openssh.options(target),
        ("HostName", [target.host]),
        ("User", [target.user]),
        ("ConnectTimeout", ["20"]),
        ("BatchMode", ["yes"]),
    ]
    argv = [openssh.ssh_binary()]
    argv += [a for key, values in opts for a in ("-o", f"{key}={openssh.render(key, values)}")]
    return Remote(target, rsh_command(argv), "dlenv-sync-host", target.label)


def _remote_sh(remote: Remote, script: str, *args: str, timeout: float = 120) -> Any:
    from dlenv.ssh import openssh

    return openssh.run_remote(remote.target, ["sh", "-c", script, "sh", *args], timeout=timeout)


# -- sync ----------------------------------------------------------------------------------------
@dataclass
class SyncResult:
    direction: str
    local: Path
    remote: str
    seconds: float
    deleted: list[str]
    marker: bool
    """Whether the sync marker on the host moved (after --down; after --up when nothing had
    changed there)."""


def sync(
    remote: Remote,
    local_dir: str | Path,
    direction: str,
    terminal: Terminal,
    *,
    delete: bool = False,
    yes: bool = False,
) -> SyncResult:
    """rsync between `local_dir` and the remote work directory (`up`: local -> host)."""
    if direction not in {"up", "down"}:
        raise ValueError(direction)
    rsync = local_rsync()
    local = _local_dir(local_dir, direction)
    work = work_dir()
    prepared = _remote_sh(remote, _PREPARE, work, MARKER, direction)
    _raise_for_prepare(remote, prepared, work)
    remote_path = f"{remote.host}:{work}/"
    src, dst = (f"{local}/", remote_path) if direction == "up" else (remote_path, f"{local}/")
    base = [
        rsync.binary,
        "-rlpt",  # no owner/group: the login user owns what arrives, on either side
        "--update",  # never replace a newer file on the receiving side
        "--filter=:- .gitignore",
        f"--filter=:- {IGNORE_FILE}",
        "--exclude=.ipynb_checkpoints/",
        "-e",
        remote.rsh,
    ]
    deleted: list[str] = []
    if delete:
        deleted = _would_delete(base, src, dst, remote)
        where = str(local) if direction == "down" else f"{remote.label}:~/{work}"
        if deleted:
            shown = "\n".join(f"  {p}" for p in deleted[:50])
            more = f"\n  ... and {len(deleted) - 50} more" if len(deleted) > 50 else ""
            terminal.info(
                f"--delete would remove {len(deleted)} file(s) from {where}:\n{shown}{more}"
            )
            if not terminal.confirm(f"Delete these {len(deleted)} file(s)?", assume_yes=yes):
                raise DlenvError("sync cancelled", "nothing was changed")
        else:
            terminal.note(f"--delete: nothing to remove from {where}")
        base.append("--delete")
    arrow = (
        f"{local} -> {remote.label}:~/{work}"
        if direction == "up"
        else (f"{remote.label}:~/{work} -> {local}")
    )
    progress = rsync.progress_args
    terminal.info(
        f"sync {direction}: {arrow} (.gitignore and {IGNORE_FILE} honoured; newer files on the "
        "receiving side are kept)"
        + ("" if progress else f"; {rsync.banner or 'this rsync'} shows no progress")
    )
    started = time.monotonic()
    _run_rsync([*base, "-h", *progress, src, dst], remote)
    seconds = time.monotonic() - started
    committed = _remote_sh(remote, _COMMIT_MARKER, MARKER)
    moved = "moved" in committed.stdout
    if committed.returncode != 0 or (direction == "down" and not moved):
        terminal.warn(
            f"could not update the sync marker ~/{MARKER} on {remote.label}: "
            f"{(committed.stderr or '').strip()[-200:]}"
        )
    return SyncResult(direction, local, f"{remote.label}:~/{work}", seconds, deleted, moved)


def _local_dir(local_dir: str | Path, direction: str) -> Path:
    path = Path(local_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is not a directory", "give a folder to sync (default: .)")
    if not path.exists():
        if direction == "up":
            raise UsageError(f"folder {path} does not exist", "give an existing folder to upload")
        if not path.parent.is_dir():
            raise UsageError(
                f"folder {path.parent} does not exist", "give a folder whose parent exists"
            )
        path.mkdir()
    return path.resolve()  # absolute: rsync reads `a:b` as a remote path


def _raise_for_prepare(remote: Remote, proc: Any, work: str) -> None:
    code = proc.returncode
    if code == 0:
        return
    where = remote.label
    if code == _NO_RSYNC:
        fix = (
            f"`dlenv ssh {remote.name} -- sudo apt-get install -y rsync` (or `dlenv provision "
            f"{remote.name}`, which installs it)"
            if remote.name
            else "install it there: `sudo apt-get install -y rsync` (or `dlenv provision --host`)"
        )
        raise DlenvError(f"rsync is not installed on {where}", fix, host=where)
    if code == _NO_WORK:
        raise DlenvError(
            f"{where} has no ~/{work} yet (nothing to bring back)",
            "upload first (`dlenv sync ... --up`) or provision it",
            host=where,
        )
    detail = (proc.stderr or "").strip().splitlines()
    raise DlenvError(
        f"could not prepare ~/{work} on {where} (exit {code})"
        + (f": {detail[-1]}" if detail else ""),
        "check the disk and permissions of the login user's home there",
        host=where,
    )


def _would_delete(base: list[str], src: str, dst: str, remote: Remote) -> list[str]:
    """What `--delete` would remove, from a dry run (rsync's `*deleting PATH` lines)."""
    proc = subprocess.run(
        [*base, "--delete", "--dry-run", "--itemize-changes", src, dst],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise _rsync_error(proc.returncode, proc.stderr, remote)
    found = []
    for line in proc.stdout.splitlines():
        if line.startswith("*deleting"):
            found.append(line.split(None, 1)[1] if " " in line else line)
    return found


def _run_rsync(argv: list[str], remote: Remote) -> None:
    """Run rsync with its progress on our stderr; its error lines kept for the one-line error."""
    proc = subprocess.Popen(
        argv, stdout=sys.stderr, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    tail: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        sys.stderr.flush()
        tail = [*tail[-9:], line]
    code = proc.wait()
    if code in (0, 24):  # 24: files vanished on the sender while it ran (a running job's)
        return
    raise _rsync_error(code, "".join(tail), remote)


def _rsync_error(code: int, stderr: str, remote: Remote) -> DlenvError:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    first = next(
        (ln for ln in lines if not ln.startswith("rsync error:")), lines[-1] if lines else ""
    )
    if code == 23:
        return DlenvError(
            f"rsync could not transfer some files: {first}",
            "fix the files named above (permissions?) and sync again",
            host=remote.label,
        )
    if code in (12, 255) or "connection unexpectedly closed" in stderr:
        return DlenvError(
            f"rsync lost the SSH connection to {remote.label}: {first}",
            "check that it runs (`dlenv status`) and sync again",
            host=remote.label,
        )
    return DlenvError(
        f"rsync failed (exit {code}): {first}", "see rsync's lines above", host=remote.label
    )


# -- the `down` guard ------------------------------------------------------------------------
class UnsavedWorkError(DlenvError):
    """`down` would destroy files that changed since the last `sync --down` (or cannot tell)."""


def changed_files(remote: Remote) -> list[str]:
    """Files under the remote work directory newer than the sync marker (all without one),
    `.ipynb_checkpoints` left out; paths relative to the work directory."""
    proc = _remote_sh(remote, _LIST_CHANGED, work_dir(), MARKER, timeout=120)
    if proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()
        raise DlenvError(
            f"could not list ~/{work_dir()} on {remote.label} (exit {proc.returncode})"
            + (f": {detail[-1]}" if detail else ""),
            host=remote.label,
        )
    return sorted(p[2:] if p.startswith("./") else p for p in proc.stdout.split("\0") if p)


def mark_work(name: str, settings: Settings) -> None:
    """Tag NAME as (possibly) holding work: from now on `down` checks before terminating."""
    from dlenv.cloud import instances
    from dlenv.cloud.session import from_settings

    aws = from_settings(settings)
    env = instances.find(aws, name)
    if env is None or env.tags.get(TAG_WORK) == "yes":
        return
    instances.tag(aws, [env.instance_id], {TAG_WORK: "yes"})


def check_before_down(name: str, settings: Settings, terminal: Terminal) -> None:
    """Refuse (UnsavedWorkError) when `down NAME` would destroy work not brought back.

    Lists the files under ~/work changed since the last `sync --down`. A stopped or unreachable
    environment cannot be listed: refused as well, unless its tags say it never held a work
    directory (launched and never provisioned nor synced to). No environment: nothing to check
    (`down` then reports what it finds).
    """
    from dlenv.cloud import instances
    from dlenv.cloud.session import from_settings

    aws = from_settings(settings)
    env = instances.find(aws, name)
    if env is None or env.state in {"shutting-down", "terminated"}:
        return
    if env.tags.get(TAG_WORK) == "none":
        return  # never provisioned nor synced to: no work directory can exist
    work = work_dir()
    fix = f"`dlenv sync {name} --down` first, or `dlenv down {name} --discard-changes` to delete it"
    if env.state != "running":
        raise UnsavedWorkError(
            f"{name} is {env.state}: dlenv cannot list the files in its ~/{work} that changed "
            "since the last `sync --down`",
            f"start it to check (`dlenv start {name}`), or `dlenv down {name} --discard-changes`",
        )
    import copy

    quick = copy.copy(settings)  # a guard that cannot connect refuses soon, not in 10 minutes
    quick.ssh_timeout = min(settings.ssh_timeout, 30)
    try:
        remote = environment_remote(name, quick, terminal)
        files = changed_files(remote)
    except SshError as exc:
        raise UnsavedWorkError(
            f"cannot reach {name} to list the files in its ~/{work} changed since the last "
            f"`sync --down` ({exc.one_line()})",
            f"start or reach it to check, or `dlenv down {name} --discard-changes`",
        ) from None
    except DlenvError as exc:
        raise UnsavedWorkError(
            f"cannot list the files in ~/{work} of {name}: {exc.one_line()}",
            (exc.hint + "; or " if exc.hint else "") + f"`dlenv down {name} --discard-changes`",
        ) from None
    if files:
        shown = ", ".join(files[:SHOWN])
        more = f" and {len(files) - SHOWN} more" if len(files) > SHOWN else ""
        raise UnsavedWorkError(
            f"{name} has {len(files)} file(s) in ~/{work} changed since the last "
            f"`dlenv sync {name} --down`: {shown}{more}",
            fix,
        )
    terminal.note(f"{name}: nothing in ~/{work} changed since the last sync down")
