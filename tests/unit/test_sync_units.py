"""The pure parts of `dlenv sync`: which progress flag a local rsync gets, how ssh's words reach
rsync's `-e` (checked against the real rsync's own splitting), and the marker/work paths."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from dlenv.ops import sync


@pytest.mark.parametrize(
    ("banner", "version", "progress"),
    [
        ("rsync  version 3.2.7  protocol version 31\nCopyright", (3, 2, 7), ["--info=progress2"]),
        ("rsync  version v3.4.1  protocol version 32", (3, 4, 1), ["--info=progress2"]),
        ("rsync  version 3.1.0  protocol version 31", (3, 1, 0), ["--info=progress2"]),
        ("rsync  version 3.0.9  protocol version 30", (3, 0, 9), ["--progress"]),
        ("rsync  version 2.6.9  protocol version 29", (2, 6, 9), ["--progress"]),  # macOS < 15
        ("openrsync: protocol version 29\nrsync version 2.6.9 compatible", None, []),  # macOS 15
        ("", None, []),
    ],
)
def test_progress_degrades_with_the_local_rsync(banner, version, progress) -> None:
    assert sync.parse_version(banner) == version
    assert sync.LocalRsync("rsync", version, banner).progress_args == progress


def test_missing_local_rsync_is_one_line_naming_the_install(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(sync.DlenvError) as caught:
        sync.local_rsync()
    assert caught.value.message == "rsync is not installed on this machine"
    assert (
        "apt-get install rsync" in caught.value.hint and "brew install rsync" in caught.value.hint
    )


@pytest.mark.skipif(shutil.which("rsync") is None, reason="needs the local rsync (scripts/test)")
def test_rsh_words_survive_rsyncs_own_splitting(tmp_path: Path) -> None:
    """A state dir with a space (macOS), a quote and an ssh_config value in double quotes each
    reach ssh as the one word they were."""
    fake = tmp_path / "fake ssh"
    seen = tmp_path / "seen"
    fake.write_text(
        f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{seen}'\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    words = [
        str(fake),
        "-F",
        "/Users/me/Library/Application Support/dlenv/ssh_config",
        '-oUserKnownHostsFile="/a b/known_hosts" /c/known_hosts',
        "it's",
    ]
    src = tmp_path / "src"
    src.mkdir()
    subprocess.run(
        ["rsync", "-e", sync.rsh_command(words), f"{src}/", "somehost:work/"],
        capture_output=True,
        timeout=30,
    )
    assert seen.read_text().splitlines()[: len(words) - 1] == words[1:]


def test_work_dir_comes_from_the_stack() -> None:
    assert sync.work_dir() == "work"
    assert sync.MARKER == ".local/state/dlenv/synced-down"
