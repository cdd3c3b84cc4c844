"""A persistent spot environment interrupted by AWS, through the real CLI: moto's EC2 for the
instance (its record set as AWS leaves it: stopped, StateReason `Server.SpotInstanceShutdown`), a
host container behind `ssh_proxy_command` for its SSH.

`status` names the interruption and that AWS restarts it; a `dlenv jupyter --background` tunnel
waits while the instance is stopped, then, once AWS has restarted it at a new public address,
looks the address up by the environment's name tag, reconnects there and verifies the host key
under the environment's alias (StrictHostKeyChecking), and the Lab answers through it again.
The Lab here is a stand-in (a static HTTP service under the Lab's unit name and port, with a
token file): the test is about the tunnel, not about JupyterLab.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from awsfake import ACCOUNT, console_with_host_keys
from harness.ports import free_port
from instancehost import wire

pytestmark = [pytest.mark.docker, pytest.mark.hosts]

NAME = "spotty"
TOKEN = "a" * 48
LAB_UNIT = """[Unit]
Description=stand-in for JupyterLab, answering /api on the port of the Lab
[Service]
ExecStart=/usr/bin/python3 -m http.server 8888 --bind 127.0.0.1 --directory /srv/lab
[Install]
WantedBy=multi-user.target
"""

INTERRUPTED = (
    "Server.SpotInstanceShutdown: The instance was stopped because the number of Spot requests "
    "with a maximum price equal to or higher than the Spot price exceeded available capacity or "
    "because of an increase in the Spot price."
)


def _stand_in_lab(host: Any) -> None:
    script = (
        "command -v python3 >/dev/null || (apt-get update -qq && "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-minimal >/dev/null); "
        "mkdir -p /srv/lab /etc/dlenv && echo '{}' > /srv/lab/api && "
        f"echo {TOKEN} > /etc/dlenv/jupyter-token && "
        f"printf '%s' {shlex.quote(LAB_UNIT)} > /etc/systemd/system/dlenv-jupyter.service && "
        "systemctl daemon-reload && systemctl enable --now dlenv-jupyter && "
        "for i in $(seq 50); do curl -fs http://127.0.0.1:8888/api >/dev/null && exit 0; "
        "sleep 0.2; done; exit 1"
    )
    res = host.exec(script, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def _moto_instance(instance_id: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[ACCOUNT]["us-east-1"].get_instance(instance_id)


def _answers(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def test_interrupted_persistent_spot_is_reported_and_the_tunnel_follows_it(
    cli, host, monkeypatch, tmp_path
) -> None:
    import moto.ec2.responses.general as general
    from moto.ec2.models.instances import StateReason

    monkeypatch.setattr(general, "SAMPLE_CONSOLE_OUTPUT", console_with_host_keys(host.host_keys))
    cli.env.update(wire(Path(cli.env["DLENV_STATE_DIR"]), host, NAME))
    dialled = tmp_path / "dialled"
    relay = Path(__file__).with_name("logrelay.py")
    cli.env["DLENV_SSH_PROXY_COMMAND"] = (
        f"{sys.executable} {relay} %h {dialled} 127.0.0.1 {host.port}"
    )
    up = cli("up", NAME, "--no-provision", "--yes", "--spot")
    assert up.code == 0, up.err
    [env] = json.loads(cli("status", NAME, "--json").out)["environments"]
    assert env["market"] == "spot-persistent", env  # the default spot type: stop, not terminate
    first_ip = env["ip"]
    _stand_in_lab(host)

    port = free_port()
    jup = cli("jupyter", NAME, "--no-browser", "--background", "--port", str(port))
    opened = time.monotonic()
    assert jup.code == 0, jup.err
    base = f"http://127.0.0.1:{port}/api"
    try:
        assert _answers(base, 30)
        record = json.loads(
            next((Path(cli.env["DLENV_STATE_DIR"]) / "tunnels").glob("*.json")).read_text()
        )
        log = Path(record["log"])

        # AWS interrupts it: the instance stops (stop-on-interruption), the link drops. (A link
        # that fails within 5 s of the first connect is taken for a setup error and not retried:
        # tunnel.supervise's rule; an interruption comes later than that.)
        time.sleep(max(0.0, 6 - (time.monotonic() - opened)))
        inst = _moto_instance(env["instance_id"])
        inst.stop()
        inst.state_reason = StateReason(INTERRUPTED, "Server.SpotInstanceShutdown")
        host.exec("pkill -f '^sshd: dlenv' || true")
        status = cli("status")
        assert status.code == 0, status.err
        assert "spot interrupted: AWS restarts it when capacity returns" in status.out, status.out
        [now] = json.loads(cli("status", NAME, "--json").out)["environments"]
        assert now["state"] == "stopped" and now["interrupted"] is True, now
        deadline = time.monotonic() + 30
        while "is not running now" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "is not running now" in log.read_text(), log.read_text()

        # capacity returns: AWS starts it again, at a new public address
        inst.start()
        new_ip = inst.public_ip
        assert new_ip and new_ip != first_ip
        assert _answers(base, 90), log.read_text()
        text = log.read_text()
        assert f"{NAME} is now at {new_ip}; reconnecting there" in text, text
        assert dialled.read_text().splitlines()[-1] == new_ip  # ssh dialled the new address
        assert "REMOTE HOST IDENTIFICATION" not in text  # the same key, checked under the alias
    finally:
        cli("jupyter", "--stop", NAME)
    r = cli("down", NAME, "--yes", "--discard-changes", timeout=300)
    assert r.code == 0, r.err
