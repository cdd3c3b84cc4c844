"""The idle stop's warning reaches the notebook user: on a provisioned host (real JupyterLab under
its systemd unit, reached through an SSH tunnel as `dlenv jupyter` does), the idle check's warning
goes to JupyterLab's notification center as well as to `wall`.

Checked at the protocol level, as the browser receives it: the Lab page announces the frontend
part of the notification extension (so an open tab loads it), an open tab's notification
websocket gets the warning pushed the moment the check sends it, and a tab that polls instead
finds it queued. The check runs for real (not dry-run) in its warning phase: it stops nothing.
"""

from __future__ import annotations

import json
import re
import socket

import pytest

from dlenv.provision.options import ProvisionOptions
from dlenv.provision.runner import provision
from dlenv.ssh.session import SshHost
from dlenv.terminal import Terminal

pytestmark = [pytest.mark.docker, pytest.mark.hosts, pytest.mark.slow]

CHECK = "/usr/local/lib/dlenv/idle-check"
NAMESPACE = "jupyterlab-notifications-extension"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lab_host(host_pool, wheelhouse):
    host = host_pool()
    [res] = provision(
        [host.target()],
        ProvisionOptions(python="uv", wheelhouse=wheelhouse, idle_stop=10),
        Terminal(interactive=False),
    )
    assert res.ok, res.error
    return host


def test_idle_warning_is_pushed_to_open_lab_tabs(lab_host) -> None:
    import requests
    import websocket

    token = lab_host.exec("cat /etc/dlenv/jupyter-token").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    auth = {"Authorization": f"token {token}"}
    port = _free_port()
    with SshHost(lab_host.target()) as ssh, ssh.forward_local(port, 8888):
        base = f"http://127.0.0.1:{port}"
        # the Lab page tells the browser to load the extension's frontend (a prebuilt one)
        page = requests.get(f"{base}/lab", headers=auth, timeout=30).text
        assert "jupyterlab_notifications_extension" in page, page[:2000]
        # nobody else may post: the ingest wants the Lab's token
        refused = requests.post(f"{base}/{NAMESPACE}/ingest", json={"message": "x"}, timeout=10)
        assert refused.status_code == 403

        tab = websocket.create_connection(
            f"ws://127.0.0.1:{port}/{NAMESPACE}/stream",
            header=[f"Authorization: token {token}"],
            timeout=30,
        )
        try:
            # idle since 595 s of a 600 s window: inside the warning time (5 min), no stop yet
            lab_host.exec(
                "mkdir -p /run/dlenv && rm -f /run/dlenv/idle-warned && "
                "echo $(( $(date +%s) - 595 )) > /run/dlenv/idle-since",
                check=True,
            )
            res = lab_host.exec(f"DLENV_IDLE_SECONDS=600 {CHECK}")
            assert res.returncode == 0, res.stdout + res.stderr
            assert "warning: dlenv: this machine stops in about 1 min" in res.stdout, res.stdout
            assert "notified JupyterLab (notif_" in res.stdout, res.stdout
            assert "would run shutdown" not in res.stdout and "stopping" not in res.stdout
            pushed = json.loads(tab.recv())
        finally:
            tab.close()
        [note] = pushed["notifications"]
        assert note["type"] == "warning" and note["autoClose"] is False, note
        assert note["message"].startswith("dlenv: this machine stops in about 1 min"), note
        assert "dlenv keep-awake NAME 2h" in note["message"]
        # a tab that polls (the extension's 30 s fallback) finds the same notification queued
        polled = requests.get(f"{base}/{NAMESPACE}/notifications", headers=auth, timeout=10)
        assert [n["id"] for n in polled.json()["notifications"]] == [note["id"]]
        # warned once per idle period: the next run says nothing new
        again = lab_host.exec(f"DLENV_IDLE_SECONDS=600 {CHECK}").stdout
        assert "notified JupyterLab" not in again, again
    lab_host.exec("rm -f /run/dlenv/idle-since /run/dlenv/idle-warned")


def test_dry_run_tells_nobody(lab_host) -> None:
    lab_host.exec(
        "rm -f /run/dlenv/idle-warned && echo $(( $(date +%s) - 595 )) > /run/dlenv/idle-since",
        check=True,
    )
    out = lab_host.exec(f"DLENV_IDLE_DRY_RUN=1 DLENV_IDLE_SECONDS=600 {CHECK}").stdout
    assert "warning: dlenv: this machine stops" in out and "notified JupyterLab" not in out, out
    # nothing queued either: the Lab's queue is empty
    token = lab_host.exec("cat /etc/dlenv/jupyter-token").stdout.strip()
    queued = lab_host.exec(
        f"curl -fsS -H 'Authorization: token {token}' "
        f"http://127.0.0.1:8888/{NAMESPACE}/notifications"
    ).stdout
    assert json.loads(queued)["notifications"] == [], queued
