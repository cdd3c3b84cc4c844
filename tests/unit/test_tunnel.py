from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dlenv.errors import HostKeyChangedError, HostKeyUnknownError, SshAuthError
from dlenv.ssh import openssh, tunnel
from dlenv.ssh.target import SshTarget


def test_ssh_options_always_verify_host_keys(tmp_path):
    target = SshTarget(
        host="54.1.2.3",
        user="ubuntu",
        key_file=tmp_path / "k",
        known_hosts=tmp_path / "kh",
        proxy_command="nc %h %p",
        host_key_alias="dlenv-box",
    )
    args = openssh.ssh_options(target)
    assert "StrictHostKeyChecking=yes" in args and f"UserKnownHostsFile={tmp_path / 'kh'}" in args
    assert "HostKeyAlias=dlenv-box" in args and "ProxyCommand=nc %h %p" in args
    assert args[-4:] == ["-l", "ubuntu", "--", "54.1.2.3"]
    assert not any("StrictHostKeyChecking=no" in a for a in args)


def test_pick_port_skips_a_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not tunnel.port_free(port)
        assert tunnel.pick_port(port) > port


def _record(name: str, pid: object) -> None:
    tunnel.record_path(name).write_text(
        json.dumps({"name": name, "pid": pid, "local_port": 1, "url": "u"})
    )


def test_stale_and_foreign_background_records_are_dropped(tmp_path, monkeypatch):
    """A dead pid is a stale record; a live pid that is not our supervisor is never signalled."""
    monkeypatch.setenv("DLENV_STATE_DIR", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ours = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "dlenv.ssh.tunnel", "live"],
        start_new_session=True,
    )
    # `python -c CODE dlenv.ssh.tunnel live` shows `dlenv.ssh.tunnel live` in ps, like the daemon
    try:
        _record("old", dead.pid)
        _record("live", ours.pid)
        assert [r["name"] for r in tunnel.open_tunnels()] == ["live"]
        assert not Path(tunnel.record_path("old")).exists()
        assert tunnel.stop_background("live") == ["live"]
        ours.wait(timeout=5)
    finally:
        ours.kill()


@pytest.mark.parametrize("pid", [0, 1, -1, "sleep"])
def test_stop_never_signals_a_pid_that_is_not_its_supervisor(tmp_path, monkeypatch, capsys, pid):
    monkeypatch.setenv("DLENV_STATE_DIR", str(tmp_path))
    sleeper = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        _record("box", sleeper.pid if pid == "sleep" else pid)
        said: list[str] = []
        assert tunnel.stop_background("box", said.append) == []
        assert sleeper.poll() is None  # still alive: nothing was signalled
        assert not tunnel.record_path("box").exists()
        assert len(said) == 1 and "not a dlenv tunnel" in said[0], said
    finally:
        sleeper.kill()


def test_a_supervisor_of_another_tunnel_is_not_ours(tmp_path, monkeypatch):
    monkeypatch.setenv("DLENV_STATE_DIR", str(tmp_path))
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "dlenv.ssh.tunnel", "other"],
        start_new_session=True,
    )
    try:
        assert tunnel.is_our_supervisor(other.pid, "other")
        assert not tunnel.is_our_supervisor(other.pid, "box")
    finally:
        other.kill()


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"name": "box", "pid": "12"}', b"\xff\xfe", b"null"],
)
def test_a_corrupt_record_is_one_line_and_removed(tmp_path, monkeypatch, content):
    monkeypatch.setenv("DLENV_STATE_DIR", str(tmp_path))
    tunnel.record_path("box").write_bytes(content)
    said: list[str] = []
    assert tunnel.open_tunnels(said.append) == []
    assert len(said) == 1 and str(tunnel.record_path("box")) in said[0], said
    assert "\n" not in said[0]
    assert not tunnel.record_path("box").exists()


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        (
            "No ED25519 host key is known for h and you have requested strict checking.\n"
            "Host key verification failed.\n",
            HostKeyUnknownError,
        ),
        (
            "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n"
            "Host key verification failed.\n",
            HostKeyChangedError,
        ),
        ("u@h: Permission denied (publickey).\n", SshAuthError),
    ],
)
def test_openssh_failures_are_typed_once(stderr, kind):
    err = openssh.classify(SshTarget(host="h", user="u"), stderr)
    assert type(err) is kind and err.hint


def test_jupyter_needs_exactly_one_target(tmp_path, monkeypatch):
    from dlenv import config
    from dlenv.errors import UsageError
    from dlenv.ops.targets import resolve_target
    from dlenv.terminal import Terminal

    with pytest.raises(UsageError, match="NAME or --host"):
        resolve_target(
            None, None, None, config.load({}, env={}), Terminal(interactive=False), yes=True
        )
