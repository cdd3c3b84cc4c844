"""Where dlenv keeps its local state (keys, known_hosts, ssh config include, caches).

AWS is the source of truth for what exists; this directory only keeps what AWS cannot: private
keys, host keys and caches. `DLENV_STATE_DIR` / `DLENV_CONFIG_DIR` relocate it (tests, CI, users
who keep state on an encrypted volume).
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """The state directory, created 0700 on first use (it holds private keys)."""
    env = os.environ.get("DLENV_STATE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        from platformdirs import user_state_path

        path = user_state_path("dlenv", appauthor=False)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


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
    path.mkdir(parents=True, exist_ok=True)
    return path


def keys_dir() -> Path:
    path = state_dir() / "keys"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
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
