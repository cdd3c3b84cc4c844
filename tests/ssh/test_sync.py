"""`dlenv sync --host` through the real CLI and a real rsync, to a systemd host container over
OpenSSH with dlenv's verified options (HOME's dlenv state dir has a space, as on macOS).

Up: .gitignore and .dlenvignore rules hold back what they name, a folder with a space works;
down: a file made on the host comes back, a newer local file is not overwritten, and the sync
marker on the host is touched; --delete lists first and is refused without confirmation.
"""

from __future__ import annotations

import os
import time

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.hosts]

MARKER = "/home/dlenv/.local/state/dlenv/synced-down"


def test_sync_up_and_down_with_a_host(home, host, tmp_path) -> None:
    project = tmp_path / "my project"
    (project / "data").mkdir(parents=True)
    (project / "src").mkdir()
    (project / ".ipynb_checkpoints").mkdir()
    (project / "train.py").write_text("print('train')\n")
    (project / "src" / "model.py").write_text("class Model: ...\n")
    (project / "data" / "big.bin").write_bytes(b"\0" * 4096)
    (project / "secret.env").write_text("TOKEN=x\n")
    (project / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_text("{}")
    (project / ".gitignore").write_text("data/\n*.log\n")
    (project / ".dlenvignore").write_text("secret.env\n")
    (project / "run.log").write_text("noise\n")
    common = ["--host", host.spec, "-i", str(host.key)]

    up = home.dlenv("sync", *common, str(project), "--up", "--trust-new-host-key")
    assert up.code == 0, up.err
    assert "synced up" in up.err and "Traceback" not in up.err
    listed = host.exec("cd /home/dlenv/work && find . -type f | sort", check=True).stdout.split()
    assert listed == [
        "./.dlenvignore",
        "./.gitignore",
        "./src/model.py",
        "./train.py",
    ], listed
    owner = host.exec("stat -c %U /home/dlenv/work/train.py", check=True).stdout.strip()
    assert owner == "dlenv"
    # nothing had changed on the host: the upload's files count as saved
    assert host.exec(f"test -e {MARKER}").returncode == 0

    # made in the Lab; and a local edit newer than the host's copy
    host.exec(
        "mkdir -p /home/dlenv/work/out && echo 0.93 > /home/dlenv/work/out/acc.txt"
        " && echo 'print(1)' > /home/dlenv/work/train.py && touch -d '2001-01-01' "
        "/home/dlenv/work/train.py",
        check=True,
        user="dlenv",
    )
    host.exec(f"touch -d '2001-01-01' {MARKER}", check=True)
    (project / "train.py").write_text("print('newer here')\n")
    before = time.time()
    down = home.dlenv("sync", *common, str(project), "--down")
    assert down.code == 0, down.err
    assert (project / "out" / "acc.txt").read_text() == "0.93\n"
    assert (project / "train.py").read_text() == "print('newer here')\n"  # --update kept it
    marked = float(host.exec(f"stat -c %Y {MARKER}", check=True).stdout)
    assert marked >= before - 5, (marked, before)

    # --delete: listed, and refused without a terminal or --yes; with --yes, gone on the host
    os.remove(project / "src" / "model.py")
    refused = home.dlenv("sync", *common, str(project), "--up", "--delete")
    assert refused.code == 2 and "src/model.py" in refused.err, refused.err
    assert "--yes" in refused.err
    assert host.exec("test -e /home/dlenv/work/src/model.py").returncode == 0
    deleted = home.dlenv("sync", *common, str(project), "--up", "--delete", "--yes")
    assert deleted.code == 0 and "1 deleted" in deleted.err, deleted.err
    assert host.exec("test -e /home/dlenv/work/src/model.py").returncode == 1
    assert host.exec("test -e /home/dlenv/work/out/acc.txt").returncode == 0  # both sides have it
    assert not (home.root / ".ssh" / "known_hosts").exists()


def test_missing_rsync_on_the_host_is_one_line(home, host, tmp_path) -> None:
    host.exec("mv /usr/bin/rsync /usr/bin/rsync.away", check=True)
    res = home.dlenv(
        "sync", "--host", host.spec, "-i", str(host.key), str(tmp_path), "--up",
        "--trust-new-host-key",
    )  # fmt: skip
    assert res.code == 1, res.err
    assert "rsync is not installed on 127.0.0.1" in res.err and "apt-get install" in res.err
    assert "Traceback" not in res.err
