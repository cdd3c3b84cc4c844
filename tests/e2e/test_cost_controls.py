"""Cost controls on a named environment through the real CLI: moto's EC2 for the instance, a
systemd host container behind `ssh_proxy_command` for its SSH (host keys from the console).

`dlenv budget NAME 50` writes the budget the machine enforces (and the tag `status` shows),
`dlenv budget NAME` reads the spend back, `dlenv keep-awake NAME 2h` holds the idle stop off, and
`dlenv status --idle` reads every running environment's countdown over the verified SSH path.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from awsfake import console_with_host_keys
from harness import hosts
from instancehost import wire

pytestmark = [pytest.mark.docker, pytest.mark.hosts]

NAME = "costbox"
CHECK = "/usr/local/lib/dlenv/idle-check"


def install_idle_check(host) -> None:
    """The idle check and its conf as the idle-autostop step installs them (no full provision)."""
    from dlenv.provision.manifest import load_stack
    from dlenv.provision.steps import file_context, render_file

    res = host.exec(
        "command -v python3 >/dev/null || (apt-get update -qq && "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-minimal >/dev/null)",
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    ctx = file_context(load_stack(), "/opt/dlenv/env", hosts.USER, 60)
    for path, name, mode in (
        (CHECK, "idle-check.j2", "755"),
        ("/etc/dlenv/idle.conf", "idle.conf.j2", "644"),
    ):
        subprocess.run(
            [
                *("docker", "exec", "-i", host.container, "bash", "-c"),
                'mkdir -p "$(dirname "$0")" && cat > "$0" && chmod "$1" "$0"',
                path,
                mode,
            ],
            input=render_file(name, ctx) + "\n",
            text=True,
            check=True,
        )


def test_budget_keep_awake_and_idle_status_by_name(cli, host, monkeypatch) -> None:
    import moto.ec2.responses.general as general

    monkeypatch.setattr(general, "SAMPLE_CONSOLE_OUTPUT", console_with_host_keys(host.host_keys))
    cli.env.update(wire(Path(cli.env["DLENV_STATE_DIR"]), host, NAME))
    up = cli("up", NAME, "--no-provision", "--yes")
    assert up.code == 0, up.err
    install_idle_check(host)

    r = cli("budget", NAME, "50", timeout=120)
    assert r.code == 0, r.err
    assert "budget $50.00 from now" in r.err and "stops itself after about" in r.err, r.err
    conf = host.exec("cat /etc/dlenv/budget.conf").stdout
    assert "BUDGET_USD=50.00" in conf and "PRICE_PER_HOUR=0.5260" in conf, conf
    [env] = [e for e in json.loads(cli("status", NAME, "--json").out)["environments"]]
    assert env["budget_usd"] == 50.0

    host.exec(f"DLENV_IDLE_DRY_RUN=1 {CHECK}", check=True)
    r = cli("budget", NAME, timeout=120)
    assert r.code == 0 and "budget $0.00 of $50.00 (0%)" in r.err, r.err

    r = cli("keep-awake", NAME, "2h", timeout=120)
    assert r.code == 0 and "stays up until" in r.err, r.err
    out = host.exec(f"DLENV_IDLE_DRY_RUN=1 {CHECK}").stdout
    assert "busy: keep-awake until" in out, out

    table = cli("status", NAME, "--idle", timeout=120)
    assert table.code == 0, table.err
    text = table.out + table.err
    assert f"{NAME}: in use (keep-awake until" in text and "budget $0.00 of $50.00" in text, text
    data = json.loads(cli("status", NAME, "--idle", "--json", timeout=120).out)
    assert data["environments"][0]["idle"].startswith("in use (keep-awake until")

    assert cli("budget", NAME, "--off", timeout=120).code == 0
    assert host.exec("test -e /etc/dlenv/budget.conf").returncode == 1
    [env] = [e for e in json.loads(cli("status", NAME, "--json").out)["environments"]]
    assert env["budget_usd"] is None
    r = cli("down", NAME, "--yes", "--discard-changes", timeout=300)
    assert r.code == 0, r.err
