"""The whole journey through the real CLI: up -> status -> jupyter -> notebook -> smoke-test ->
ssh -> down, against moto's server and a fresh systemd host container standing in for the EC2
instance, reached through the documented `ssh_proxy_command` setting (as SSM/bastion users do).

The container's real SSH host keys are put in the instance's console output (as cloud-init
prints them), so the run exercises the verified host-key path, not trust-on-first-use.

`up` runs once for the module (`journey`); the check that JupyterLab's UI renders in Chromium is
a test of its own, before the journey's, so a missing browser fails that one test (naming the fix)
and never cuts the journey's later checks short. The journey ends with `down`, so it comes last.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from awsfake import console_with_host_keys, dlenv_resources
from harness import hosts
from harness.ports import free_port
from instancehost import RELAY, wire
from motocli import Cli, Result, make_cli

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.hosts]

NAME = "e2e"
ARTIFACTS = Path(
    os.environ.get("DLENV_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)


@dataclass
class Journey:
    """Environment NAME, up on its host container: the CLI wired to it and what `up` said."""

    cli: Cli
    host: hosts.TestHost
    project: Path
    up: Result
    seconds: float


@pytest.fixture(scope="module")
def journey(moto_server, tmp_path_factory):
    """`dlenv up NAME` once for the module, on a fresh host container (removed at the end).

    The CLI is wired to the container: dlenv's key for NAME is the container's authorized key,
    and moto's console output carries the container's host keys."""
    import moto.ec2.responses.general as general

    from docker_support import find_wheelhouse

    hosts.require_engine()
    hosts.ensure_images()
    root = tmp_path_factory.mktemp("journey")
    host = hosts.start_host(work=root)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(general, "SAMPLE_CONSOLE_OUTPUT", console_with_host_keys(host.host_keys))
            cli = make_cli(moto_server, root)
            cli.env.update(wire(Path(cli.env["DLENV_STATE_DIR"]), host, NAME))
            project = root / "my project"  # uploaded by `up --workdir` once provisioned
            project.mkdir()
            (project / "prepare.py").write_text("print('data ready')\n")
            started = time.monotonic()
            up = cli(
                "up",
                NAME,
                "--yes",
                "--python",
                "uv",
                "--wheelhouse",
                str(find_wheelhouse()),
                "--idle-stop",
                "30",
                "--budget",
                "20",
                "--workdir",
                str(project),
                timeout=1500,
            )
            assert up.code == 0, up.err[-3000:]
            yield Journey(cli, host, project, up, time.monotonic() - started)
            cli("down", NAME, "--yes")  # where the journey stopped before its own `down`
    finally:
        host.stop()


def test_lab_renders_in_chromium(journey):
    """JupyterLab's UI loads through dlenv's tunnel in a real browser (a screenshot is kept)."""
    cli = journey.cli
    jup = cli("jupyter", NAME, "--no-browser", "--background", "--port", str(free_port()))
    assert jup.code == 0, jup.err
    try:
        _screenshot_lab(jup.out.strip().splitlines()[-1])
    finally:
        cli("jupyter", "--stop", NAME)  # the journey then checks that no tunnel is left


def test_whole_journey(journey):
    cli, host, project, up = journey.cli, journey.host, journey.project, journey.up
    # the budget is on the machine (its timer enforces it) and on the instance's tag
    assert f"{NAME}: budget $20.00: it stops itself after about" in up.err, up.err[-2000:]
    assert "BUDGET_USD=20.00" in host.exec("cat /etc/dlenv/budget.conf").stdout
    assert host.exec("cat /home/dlenv/work/prepare.py").stdout == "print('data ready')\n"
    assert "host keys read from the instance console" in up.err
    assert "trusting on first use" not in up.err
    assert f"dlenv jupyter {NAME}" in up.err
    print(f"up (launch + provision): {journey.seconds:.1f}s")

    status = json.loads(cli("status", "--json").out)
    [env] = [e for e in status["environments"] if e["name"] == NAME]
    assert env["state"] == "running" and env["budget_usd"] == 20.0

    jup = cli("jupyter", NAME, "--no-browser", "--background", "--port", str(free_port()))
    assert jup.code == 0, jup.err
    url = jup.out.strip().splitlines()[-1]
    assert url.startswith("http://127.0.0.1:") and "/lab?token=" in url
    base, token = url.split("/lab?token=")
    try:
        assert (
            requests.get(f"{base}/api/status", params={"token": token}, timeout=30).status_code
            == 200
        )
        assert requests.get(f"{base}/api/kernels", timeout=30).status_code == 403
        assert (
            requests.get(f"{base}/api/kernels", params={"token": "wrong"}, timeout=30).status_code
            == 403
        )
        tunnels = json.loads(cli("status", "--json").out)["tunnels"]
        assert [t["name"] for t in tunnels] == [NAME]

        _run_notebook(base, token)
        _tunnel_survives_a_dropped_link(tunnels[0]["pid"], base, token)

        smoke = cli("smoke-test", NAME, "--json", timeout=300)
        assert smoke.code == 10, smoke.err[-2000:]  # passed, CPU only (no GPU in the container)
        report = json.loads(smoke.out)
        assert report["verdict"] == "cpu-only" and report["train"]["passed"]

        nproc = cli("ssh", NAME, "--", "nproc")
        assert nproc.code == 0 and int(nproc.out.strip()) >= 1, nproc.err
    finally:
        stop = cli("jupyter", "--stop", NAME)
    assert stop.code == 0 and NAME in stop.err
    assert json.loads(cli("status", "--json").out)["tunnels"] == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/api/status", timeout=5)

    # The service stopped: `dlenv jupyter` says so and names the fix, and the fix works.
    host.exec("systemctl stop dlenv-jupyter", check=True)
    broken = cli("jupyter", NAME, "--no-browser", "--background", "--port", str(free_port()))
    assert broken.code == 1 and "JupyterLab service on e2e is not running" in broken.err, broken.err
    assert f"dlenv provision {NAME} --only jupyterlab-service" in broken.err
    fixed = cli("provision", NAME, "--only", "jupyterlab-service", timeout=300)
    assert fixed.code == 0, fixed.err[-2000:]
    assert host.exec("systemctl is-active dlenv-jupyter").stdout.strip() == "active"

    # Stopped (by the user or the idle timer): one `dlenv jupyter` starts it and tunnels again.
    assert cli("stop", NAME).code == 0
    resumed = cli(
        "jupyter",
        NAME,
        "--no-browser",
        "--background",
        "--yes",
        "--port",
        str(free_port()),
        timeout=300,
    )
    assert resumed.code == 0, resumed.err[-2000:]
    assert "starting e2e" in resumed.err and "/lab?token=" in resumed.out
    base2 = resumed.out.strip().splitlines()[-1].split("/lab?token=")[0]
    assert (
        requests.get(f"{base2}/api/status", params={"token": token}, timeout=30).status_code == 200
    )
    assert cli("jupyter", "--stop").code == 0

    # whatever the notebook run above left in ~/work comes back first; then `down` has nothing
    # to stop for (its refusals: test_sync_down_guard.py)
    back = cli("sync", NAME, str(project), "--down", timeout=300)
    assert back.code == 0, back.err
    assert (project / "prepare.py").is_file()
    down = cli("down", NAME, "--yes")
    assert down.code == 0, down.err
    assert dlenv_resources("us-east-1", NAME, cli.endpoint) == {
        "instances": [],
        "security_groups": [],
        "key_pairs": [],
        "volumes": [],
    }
    include = Path(cli.env["DLENV_STATE_DIR"]) / "ssh_config"
    assert f"Host dlenv-{NAME}" not in include.read_text()


def _tunnel_survives_a_dropped_link(supervisor: int, base: str, token: str) -> None:
    """Kill the tunnel's ssh process (a dropped link): the supervisor reconnects by itself."""
    children = subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True)
    pids = [int(p) for p in children.stdout.split()]
    assert pids, "the background tunnel has no ssh child"
    for pid in pids:
        os.kill(pid, 9)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if (
                requests.get(f"{base}/api/status", params={"token": token}, timeout=5).status_code
                == 200
            ):
                new = subprocess.run(
                    ["pgrep", "-P", str(supervisor)], capture_output=True, text=True
                )
                assert set(map(int, new.stdout.split())) - set(pids), "no new ssh process"
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError("the tunnel did not come back after its ssh process was killed")


def _run_notebook(base: str, token: str) -> None:
    import nbformat

    from jupyter_ws import execute_notebook, text_of

    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("import torch\nprint('torch', torch.__version__)"),
            nbformat.v4.new_code_cell(
                "from dlenv_smoke import job, torchprobe\n"
                "device = 'cuda' if job.usable_gpu(torchprobe.collect()) else 'cpu'  # the smoke test's choice\n"
                "x = torch.randn(256, 256, device=device)\n"
                "print('device', device, 'ok', bool(torch.isfinite(x @ x).all()))"
            ),
        ]
    )
    out = text_of(execute_notebook(base, token, nb))
    assert "torch 2." in out and "device cpu ok True" in out, out
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, ARTIFACTS / "e2e-notebook.ipynb")


def _screenshot_lab(url: str) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    # A missing browser fails this test (a skip would hide that the UI check never ran)
    assert chromium is not None, (
        "Debian's chromium is not installed: scripts/test installs it as root "
        "(apt-get install chromium)"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "e2e-jupyterlab.png"
    shot.unlink(missing_ok=True)
    profile = ARTIFACTS / "chromium-profile"
    args = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,800",
        "--virtual-time-budget=15000",
        f"--screenshot={shot}",
        "--dump-dom",
        url,
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    assert shot.is_file() and shot.stat().st_size > 10_000, proc.stderr[-1000:]
    # The Lab shell rendered (not a login page): its DOM has the application shell
    assert 'id="main"' in proc.stdout or "jp-LabShell" in proc.stdout, proc.stdout[-1500:]


def test_wrong_host_key_in_console_is_refused(cli, host, tmp_path, monkeypatch):
    """A host key that does not match what AWS's console shows stops `up`: nothing is trusted."""
    import moto.ec2.responses.general as general

    fake = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmOTffjmrgHkvOmnbWOrzA2f7kDEiWjmJUNJ8zFPtTp"
    monkeypatch.setattr(general, "SAMPLE_CONSOLE_OUTPUT", console_with_host_keys([fake]))
    keys = Path(cli.env["DLENV_STATE_DIR"]) / "keys"
    keys.mkdir(parents=True, mode=0o700)
    shutil.copy(host.key, keys / "dlenv-mitm")
    shutil.copy(host.key.with_suffix(".pub"), keys / "dlenv-mitm.pub")
    (keys / "dlenv-mitm").chmod(0o600)
    env = {
        "DLENV_SSH_USER": hosts.USER,
        "DLENV_SSH_TIMEOUT": "60",
        "DLENV_SSH_PROXY_COMMAND": f"{sys.executable} {RELAY} 127.0.0.1 {host.port}",
    }
    try:
        r = cli("up", "mitm", "--yes", env=env, timeout=300)
        assert r.code == 1 and "host key mismatch" in r.err, r.err[-2000:]
        assert "Traceback" not in r.err
    finally:
        cli("down", "mitm", "--yes")
