"""Provision real "fresh VM" hosts (systemd + sshd containers) over real SSH, then look from outside.

Order matters and is the story of one session: plan a fresh host (nothing changes), refuse an
unknown host key, interrupt a provision mid-step and resume it, provision two hosts in parallel
(one fresh, one finished) beside an unsupported one, then inspect JupyterLab, the idle timer and
the smoke test from outside, and re-run on the finished host (zero steps applied).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from dlenv.errors import ProvisionError, SshError
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.runner import provision
from dlenv.ssh.session import SshHost
from dlenv.terminal import Terminal
from harness.ports import free_port
from jupyter_ws import shutdown, start_kernel

pytestmark = [pytest.mark.docker, pytest.mark.hosts, pytest.mark.slow]
ALL_STEPS = [
    "base-packages",
    "python-env",
    "pytorch",
    "jupyterlab",
    "scientific",
    "smoke-test",  # before the Lab service, whose start runs the notebook seeder it installs
    "jupyterlab-service",
    "idle-autostop",
]


def opts(wheelhouse: Path, **kw: object) -> ProvisionOptions:
    return ProvisionOptions(python="uv", wheelhouse=wheelhouse, **kw)  # type: ignore[arg-type]


def term() -> Terminal:
    return Terminal(interactive=False)


def docker_diff(container: str) -> set[str]:
    out = subprocess.run(
        ["docker", "diff", container], capture_output=True, text=True, check=True
    ).stdout
    return {
        line
        for line in out.splitlines()
        if not re.match(r"^[ACD] /(var/log|tmp|run|root/\.cache|var/cache/apt)(/|$)", line)
    }


@pytest.fixture(scope="module")
def hosts(host_pool):
    from harness import UNSUPPORTED_IMAGE

    return {"a": host_pool(), "b": host_pool(), "c": host_pool(UNSUPPORTED_IMAGE)}


def test_plan_on_a_fresh_host_lists_every_step_and_changes_nothing(
    hosts, wheelhouse, capsys
) -> None:
    a = hosts["a"]
    with SshHost(
        a.target()
    ) as h:  # a login first, so its own traces (lastlog, wtmp) are not counted
        assert h.run("true").ok
    before = docker_diff(a.container)
    [res] = provision([a.target()], opts(wheelhouse), term(), plan_only=True)
    assert res.ok, res.error
    assert {s.name: s.status for s in res.plan} == {
        "base-packages": "pending",
        "nvidia-driver": "skipped",
        "cuda-toolkit": "skipped",
        "python-env": "pending",
        "pytorch": "pending",
        "jupyterlab": "pending",
        "scientific": "pending",
        "frameworks": "skipped",
        "jupyterlab-service": "pending",
        "idle-autostop": "pending",
        "smoke-test": "pending",
    }
    skipped = [s.reason for s in res.plan if s.status == "skipped"]
    assert skipped == ["no NVIDIA GPU"] * 2 + ["no --frameworks"]
    assert res.applied == []
    assert "no NVIDIA GPU: skipping driver/CUDA" in capsys.readouterr().err
    assert docker_diff(a.container) == before
    assert a.exec("test -e /opt/dlenv || test -e /var/lib/dlenv").returncode == 1


def test_unknown_host_key_is_refused_unless_trusted(hosts, tmp_path) -> None:
    a = hosts["a"]
    empty = tmp_path / "known_hosts"
    [res] = provision([a.target().with_(known_hosts=empty)], opts(None), term(), plan_only=True)
    assert not res.ok and isinstance(res.error, SshError)
    assert "unknown host key" in res.error.message and "--trust-new-host-key" in (
        res.error.hint or ""
    )
    assert not empty.exists()
    [res] = provision(
        [a.target().with_(known_hosts=empty)],
        opts(None),
        term(),
        plan_only=True,
        trust_new_host_key=True,
    )
    assert res.ok, res.error
    recorded = empty.read_text().split()
    assert recorded[0] == f"[127.0.0.1]:{a.port}"
    assert " ".join(recorded[1:3]) in [" ".join(k.split()[:2]) for k in a.host_keys]
    # a different key under the same name is a changed key: always refused
    other = next(k for k in hosts["b"].host_keys if k.split()[0] == recorded[1])
    empty.write_text(f"[127.0.0.1]:{a.port} {' '.join(other.split()[:2])}\n")
    [res] = provision(
        [a.target().with_(known_hosts=empty)],
        opts(None),
        term(),
        plan_only=True,
        trust_new_host_key=True,
    )
    assert not res.ok and "HOST KEY CHANGED" in res.error.message


def test_a_connection_killed_mid_step_resumes_on_rerun(hosts, wheelhouse) -> None:
    b = hosts["b"]
    killed = threading.Event()

    def kill_sessions_during_pytorch(label: str, event: str, step: str, text: str) -> None:
        if event == "start" and step == "pytorch" and not killed.is_set():

            def kill() -> None:
                time.sleep(3)
                killed.set()
                b.exec(r"pkill -f '^sshd: dlenv'")  # every session process of the login user

            threading.Thread(target=kill, daemon=True).start()

    [first] = provision([b.target()], opts(wheelhouse), term(), events=kill_sessions_during_pytorch)
    assert killed.is_set()
    assert not first.ok and isinstance(first.error, SshError), first.error
    assert "connection lost during pytorch" in first.error.one_line()
    assert first.applied == ["base-packages", "python-env"]
    recorded = b.exec("ls /var/lib/dlenv/steps").stdout.split()
    assert sorted(recorded) == ["base-packages", "python-env"]

    [second] = provision([b.target()], opts(wheelhouse), term())
    assert second.ok, second.error
    done_before = {s.name for s in second.plan if s.status == "done"}
    assert {"base-packages", "python-env"} <= done_before
    assert "base-packages" not in second.applied and "python-env" not in second.applied
    assert second.applied == [s for s in ALL_STEPS if s not in done_before]
    assert sorted(b.exec("ls /var/lib/dlenv/steps").stdout.split()) == sorted(ALL_STEPS)


def test_two_hosts_in_parallel_and_an_unsupported_one(hosts, wheelhouse) -> None:
    a, b, c = hosts["a"], hosts["b"], hosts["c"]
    start = time.monotonic()
    results = provision([a.target(), b.target(), c.target()], opts(wheelhouse), term())
    wall = time.monotonic() - start
    ra, rb, rc = results
    assert ra.ok, ra.error
    assert ra.applied == ALL_STEPS
    assert ra.versions["torch"] == "2.13.0+cpu" and ra.versions["jupyterlab"]
    assert rb.ok and rb.applied == []  # finished host: nothing to do, same run
    assert not rc.ok and isinstance(rc.error, ProvisionError)
    assert "unsupported OS Fedora Linux 40 (fedora-40); nothing was changed" in rc.error.message
    assert c.exec("test -e /opt/dlenv || test -e /var/lib/dlenv").returncode == 1
    logs = {r.log_path for r in results}
    assert len(logs) == 3 and all(p and p.is_file() for p in logs)
    assert "== jupyterlab: apply" in ra.log_path.read_text()
    assert "== jupyterlab: apply" not in rb.log_path.read_text().split("==== dlenv provision")[-1]
    print(
        f"\n[figures] fresh provision of host A (parallel with B and C): {ra.seconds:.1f}s "
        f"(wall {wall:.1f}s)"
    )


def _token(host) -> str:
    from dlenv.provision.jupyter import fetch_token

    with SshHost(host.target()) as h:  # as dlenv fetches it: the login user reads its 0600 file
        return fetch_token(h)


def test_jupyter_service_from_outside(hosts) -> None:
    import requests

    a = hosts["a"]
    assert a.exec("systemctl is-active dlenv-jupyter").stdout.strip() == "active"
    assert a.exec("stat -c '%a %U' /etc/dlenv/jupyter-token").stdout.strip() == "600 dlenv"
    token = _token(a)
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    listen = a.exec("ss -Hltn 'sport = :8888'").stdout.split()
    assert "127.0.0.1:8888" in listen and not any(
        x in listen for x in ("0.0.0.0:8888", "*:8888", "[::]:8888")
    )
    ip = a.exec("hostname -I").stdout.split()[0]
    assert (
        a.exec(f"curl -s --max-time 3 http://{ip}:8888/api").returncode == 7
    )  # refused off-loopback

    local_port = free_port()
    with SshHost(a.target()) as h, h.forward_local(local_port, 8888):
        base = f"http://127.0.0.1:{local_port}"
        assert requests.get(f"{base}/api/kernels", timeout=10).status_code == 403
        assert (
            requests.get(f"{base}/api/kernels", params={"token": "wrong"}, timeout=10).status_code
            == 403
        )
        auth = {"Authorization": f"token {token}"}
        assert requests.get(f"{base}/api/kernels", headers=auth, timeout=10).status_code == 200
        kernel = start_kernel(base, token, "dlenv")
        try:
            outputs = kernel.execute(
                "import torch; print('torch', torch.__version__, torch.ones(2).sum().item())"
            )
        finally:
            shutdown(kernel)
    out = "".join(o["text"] for o in outputs if o["output_type"] == "stream")
    assert out.strip() == "torch 2.13.0+cpu 2.0"


def test_jupyter_restarts_on_failure(hosts) -> None:
    a = hosts["a"]
    pid = a.exec("systemctl show -p MainPID --value dlenv-jupyter").stdout.strip()
    a.exec("systemctl kill -s KILL dlenv-jupyter")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = a.exec("systemctl show -p MainPID --value dlenv-jupyter").stdout.strip()
        if new not in ("0", pid) and a.exec("curl -fs http://127.0.0.1:8888/api").returncode == 0:
            break
        time.sleep(1)
    else:
        pytest.fail("JupyterLab did not come back after being killed")


def test_idle_autostop_timer_and_its_logic(hosts) -> None:
    a = hosts["a"]
    assert a.exec("systemctl is-enabled dlenv-idle.timer").stdout.strip() == "enabled"
    assert a.exec("systemctl is-active dlenv-idle.timer").stdout.strip() == "active"
    assert "IDLE_MINUTES=60" in a.exec("cat /etc/dlenv/idle.conf").stdout
    check = "DLENV_IDLE_DRY_RUN=1 DLENV_IDLE_SECONDS=1 /usr/local/lib/dlenv/idle-check"
    a.exec("rm -f /run/dlenv/idle-since")
    assert "busy: first check" in a.exec(check).stdout
    time.sleep(2.5)
    assert "would run shutdown -h now" in a.exec(check).stdout
    # an SSH command still running keeps the machine up (tests/provision/test_idle.py has the
    # terminal, tunnel-only, keep-awake, warning and hook cases)
    with SshHost(a.target()) as h:
        out = h.run(f"sudo env {check}").output
    assert "busy: ssh command running (dlenv)" in out, out


def test_smoke_test_is_installed_and_runnable(hosts) -> None:
    a = hosts["a"]
    res = a.exec(
        "/opt/dlenv/env/bin/python -c 'import dlenv_smoke, sys; print(dlenv_smoke.__file__)'",
        user="dlenv",
    )
    assert res.returncode == 0 and "/opt/dlenv/env/" in res.stdout, res.stderr
    res = a.exec("dlenv-smoke --help", user="dlenv")
    assert res.returncode == 0, res.stdout + res.stderr


STARTER_NOTEBOOKS = [
    "00-gpu-check.ipynb",
    "01-pytorch-cnn.ipynb",
    "02-keras-cnn.ipynb",
    "03-pandas-first-look.ipynb",
]


def test_starter_notebooks_are_seeded_and_run_in_the_labs_kernel(hosts, wheelhouse) -> None:
    """The Lab service's start seeded the login user's ~/work/examples; each notebook runs through
    the kernel the Lab offers (nbclient, its kernelspec and environment), as that user."""
    a = hosts["a"]
    [res] = provision([a.target()], opts(wheelhouse), term())  # a no-op after the tests above
    assert res.ok, res.error
    home = a.exec("getent passwd dlenv | cut -d: -f6").stdout.strip()
    examples = f"{home}/work/examples"
    assert a.exec(f"ls {examples}").stdout.split() == STARTER_NOTEBOOKS
    assert a.exec(f"stat -c %U {examples} {examples}/{STARTER_NOTEBOOKS[0]}").stdout.split() == [
        "dlenv",
        "dlenv",
    ]
    assert a.exec(f"test -f {home}/.local/state/dlenv/synced-down").returncode == 0
    runner = Path(__file__).resolve().parents[1] / "notebooks" / "run_notebooks.py"
    argv = ["/opt/dlenv/env/bin/python", "-", "dlenv", examples, *STARTER_NOTEBOOKS]
    proc = subprocess.run(
        ["docker", "exec", "-i", "-u", "dlenv", "-w", examples, a.container, *argv],
        input=runner.read_text(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    failed = [r for r in records if not r["ok"]]
    assert proc.returncode == 0 and not failed, f"{failed}\n{proc.stderr[-3000:]}"
    assert [r["notebook"] for r in records] == STARTER_NOTEBOOKS
    outputs = {r["notebook"]: r["output"] for r in records}
    assert "CPU only" in outputs["00-gpu-check.ipynb"]
    assert "on the torch backend" in outputs["02-keras-cnn.ipynb"]
    assert "<image/png>" in outputs["03-pandas-first-look.ipynb"]
    print(
        "\n[figures] starter notebooks on an SSH host (nbclient, kernel dlenv): "
        + ", ".join(f"{r['notebook']} {r['seconds']:.1f}s" for r in records)
    )


def test_rerun_on_a_finished_host_applies_nothing(hosts, wheelhouse) -> None:
    a = hosts["a"]
    start = time.monotonic()
    [res] = provision([a.target()], opts(wheelhouse), term())
    took = time.monotonic() - start
    assert res.ok, res.error
    assert res.applied == [] and res.pending == []
    print(f"\n[figures] no-op re-run on a finished host: {took:.1f}s")
    assert took < 60


def test_cli_errors_for_unsupported_os_and_plan_table(hosts, isolated_state) -> None:
    a, c = hosts["a"], hosts["c"]
    (isolated_state / "known_hosts").write_text(
        a.known_hosts.read_text() + c.known_hosts.read_text()
    )
    env = {"DLENV_STATE_DIR": str(isolated_state), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "dlenv", "provision", "--host", c.spec, "-i", str(c.key), "--plan"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "unsupported OS Fedora Linux 40" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlenv",
            "provision",
            "--host",
            a.spec,
            "-i",
            str(a.key),
            "--plan",
            "--python",
            "uv",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads(proc.stdout)
    assert {s["status"] for s in entry["plan"]} == {"done", "skipped"}


def test_proxy_command_is_honoured(hosts) -> None:
    a = hosts["a"]
    relay = Path(__file__).resolve().parents[1] / "harness" / "stdio_relay.py"
    flag = f"/tmp/relay-used-{uuid.uuid4().hex[:6]}"
    # the relay is a real ProxyCommand: %h/%p expand, and it leaves a trace that it ran
    command = f"sh -c 'touch {flag}; exec {sys.executable} {relay} %h %p'"
    [res] = provision([a.target().with_(proxy_command=command)], opts(None), term(), plan_only=True)
    assert res.ok, res.error
    assert Path(flag).exists()
    Path(flag).unlink()


def test_provision_environment_api_for_dlenv_up(hosts, capsys) -> None:
    from dlenv.config import Settings
    from dlenv.provision.runner import provision_environment

    a = hosts["a"]
    res = provision_environment("mybox", a.target(), Settings(python="uv", idle_stop=60), term())
    assert res.ok and res.applied == [] and res.label == "mybox"
    assert "mybox: already provisioned" in capsys.readouterr().err
    with pytest.raises(ProvisionError, match="unsupported OS"):
        provision_environment("other", hosts["c"].target(), Settings(python="uv"), term())
