"""Where dlenv keeps its local state (keys, known_hosts, ssh config include, caches).

AWS is the source of truth for what exists; this directory only keeps what AWS cannot: private
keys, host keys and caches. `DLENV_STATE_DIR` / `DLENV_CONFIG_DIR` relocate it (tests, CI, users
who keep state on an encrypted volume).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
from pathlib import Path


def state_dir() -> Path:
    """The state directory, created 0700 on first use (it holds private keys).

    An existing directory that others can write to, or that another user owns, is refused with
    one line (never chmod-ed behind the user's back): whoever can write there can swap the ssh
    config include or the keys dlenv uses.
    """
    env = os.environ.get("DLENV_STATE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        from platformdirs import user_state_path

        path = user_state_path("dlenv", appauthor=False)
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # a race, or a file: checked below
            path.mkdir(mode=0o700)
    check_private_dir(path, "dlenv's state directory")
    return path


def check_private_dir(path: Path, what: str) -> None:
    """Refuse a directory that is not a directory, not ours, or writable by group/others."""
    from dlenv.errors import StateFileError

    try:
        st = path.lstat()
    except OSError as exc:
        raise StateFileError(
            f"{what} {path} cannot be used ({exc.strerror or type(exc).__name__})",
            "check the path (DLENV_STATE_DIR relocates it)",
        ) from None
    if stat.S_ISLNK(st.st_mode):
        st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise StateFileError(
            f"{what} {path} is not a directory", "remove it or set DLENV_STATE_DIR elsewhere"
        )
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise StateFileError(
            f"{what} {path} belongs to another user (uid {st.st_uid})",
            "use a directory of your own (DLENV_STATE_DIR=...)",
        )
    if st.st_mode & 0o022:
        raise StateFileError(
            f"{what} {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}): "
            "it holds private keys and the ssh config dlenv writes",
            f"make it private: chmod 700 {shlex.quote(str(path))}",
        )


def config_dir() -> Path:
    """The user config directory holding `dlenv.toml` (not created: reading only)."""
    env = os.environ.get("DLENV_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_path

    return user_config_path("dlenv", appauthor=False)


def cache_dir() -> Path:
    """Cache for refreshed prices and similar re-creatable data."""
    path = state_dir() / "cache"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def keys_dir() -> Path:
    path = state_dir() / "keys"
    if not path.is_dir():
        path.mkdir(mode=0o700, exist_ok=True)
    check_private_dir(path, "dlenv's key directory")
    return path


def data_dir() -> Path:
    """The shipped `provision/`, `docker/`, `ami/` trees.

    In a wheel they are package data under `dlenv/_data`; in a source checkout they are the
    top-level folders of the repository, so edits there take effect without reinstalling.
    """
    packaged = Path(__file__).parent / "_data"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2]
