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

import pytest

from dlenv.provision.options import ProvisionOptions
from dlenv.provision.runner import provision
from dlenv.ssh.session import SshHost
from dlenv.terminal import Terminal
from harness.ports import free_port

pytestmark = [pytest.mark.docker, pytest.mark.hosts, pytest.mark.slow]

CHECK = "/usr/local/lib/dlenv/idle-check"
NAMESPACE = "jupyterlab-notifications-extension"


@pytest.fixture(scope="module")
def lab_host(provisioned_image, wheelhouse, tmp_path_factory):
    """A host from the provisioned image (tests/harness/provisioned.py), its idle stop set to
    10 minutes by the real runner: the only step that changes is the idle one."""
    from harness.provisioned import start_provisioned_host

    host = start_provisioned_host(provisioned_image, work=tmp_path_factory.mktemp("idle-lab"))
    try:
        [res] = provision(
            [host.target()],
            ProvisionOptions(python="uv", wheelhouse=wheelhouse, idle_stop=10),
            Terminal(interactive=False),
        )
        assert res.ok, res.error
        assert res.applied == ["idle-autostop"], res.applied
        yield host
    finally:
        host.stop()


def test_idle_warning_is_pushed_to_open_lab_tabs(lab_host) -> None:
    import requests
    import websocket

    token = lab_host.exec("cat /etc/dlenv/jupyter-token").stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    auth = {"Authorization": f"token {token}"}
    port = free_port()
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


def test_a_busy_kernel_keeps_it_awake_and_the_tunnel_alone_does_not(lab_host) -> None:
    """Issue 14's core case on a real Lab: a kernel running a cell is use; once it is done and
    the window has passed, the SSH tunnel the notebook came through (forwarding only) is not."""
    import threading
    import time

    from jupyter_ws import shutdown, start_kernel

    token = lab_host.exec("cat /etc/dlenv/jupyter-token").stdout.strip()
    check = f"DLENV_IDLE_DRY_RUN=1 DLENV_IDLE_SECONDS=2 {CHECK}"
    port = free_port()
    with SshHost(lab_host.target()) as ssh, ssh.forward_local(port, 8888):
        base = f"http://127.0.0.1:{port}"
        kernel = start_kernel(base, token)
        release = "/tmp/dlenv-test-release"
        lab_host.exec(f"rm -f {release}")
        cell = threading.Thread(
            target=kernel.execute,
            args=(f"import os, time\nwhile not os.path.exists({release!r}): time.sleep(0.2)",),
            kwargs={"timeout": 120},
        )
        cell.start()
        try:
            # idle for far longer than the window by the check's own record: only the kernel counts
            lab_host.exec(
                "mkdir -p /run/dlenv && echo $(( $(date +%s) - 600 )) > /run/dlenv/idle-since",
                check=True,
            )
            for _ in range(100):
                out = lab_host.exec(check).stdout
                if "busy: jupyter kernel busy" in out:
                    break
                time.sleep(0.3)
            assert "busy: jupyter kernel busy" in out, out
            assert "would run shutdown" not in out, out
        finally:
            lab_host.exec(f"touch {release}")
            cell.join(timeout=120)
        # the cell is done; after the window, the open tunnel alone lets the stop come
        lab_host.exec("rm -f /run/dlenv/idle-since /run/dlenv/idle-warned")
        assert "busy" in lab_host.exec(check).stdout  # a first check starts the window
        time.sleep(3)
        out = lab_host.exec(check).stdout
        assert "would run shutdown -h now" in out, out
        assert "only forwarding ports (a tunnel)" in out, out
        shutdown(kernel)
    lab_host.exec("rm -f /run/dlenv/idle-since /run/dlenv/idle-warned")
