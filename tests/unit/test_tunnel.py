from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dlenv import tunnel
from dlenv.ssh_target import SshTarget


def test_ssh_options_always_verify_host_keys(tmp_path):
    target = SshTarget(
        host="54.1.2.3",
        user="ubuntu",
        key_file=tmp_path / "k",
        known_hosts=tmp_path / "kh",
        proxy_command="nc %h %p",
        host_key_alias="dlenv-box",
    )
    args = tunnel.ssh_options(target)
    assert "StrictHostKeyChecking=yes" in args and f"UserKnownHostsFile={tmp_path / 'kh'}" in args
    assert "HostKeyAlias=dlenv-box" in args and "ProxyCommand=nc %h %p" in args
    assert args[-1] == "ubuntu@54.1.2.3" and not any("StrictHostKeyChecking=no" in a for a in args)


def test_pick_port_skips_a_busy_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not tunnel.port_free(port)
        assert tunnel.pick_port(port) > port


def test_stale_background_records_are_dropped(tmp_path, monkeypatch):
    monkeypatch.setenv("DLENV_STATE_DIR", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True
    )
    try:
        for name, pid in (("old", dead.pid), ("live", alive.pid)):
            tunnel.record_path(name).write_text(
                json.dumps({"name": name, "pid": pid, "local_port": 1, "url": "u"})
            )
        assert [r["name"] for r in tunnel.open_tunnels()] == ["live"]
        assert not Path(tunnel.record_path("old")).exists()
        assert tunnel.stop_background("live") == ["live"]
        alive.wait(timeout=5)
    finally:
        alive.kill()


def test_missing_host_key_is_explained():
    err = tunnel._ssh_failure(SshTarget(host="h", user="u"), "Host key verification failed.\n")
    assert "could not be verified" in err.message


def test_jupyter_needs_exactly_one_target(tmp_path, monkeypatch):
    from dlenv import config
    from dlenv.errors import UsageError
    from dlenv.targets import resolve_target
    from dlenv.terminal import Terminal

    with pytest.raises(UsageError, match="NAME or --host"):
        resolve_target(
            None, None, None, config.load({}, env={}), Terminal(interactive=False), yes=True
        )
