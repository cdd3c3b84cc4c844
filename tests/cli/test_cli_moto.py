"""The EC2 lifecycle through the real CLI against moto's server, and the bad-input table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from awsfake import any_dlenv_resources, dlenv_resources

NOTHING = {"instances": [], "security_groups": [], "key_pairs": [], "volumes": []}


def _no_credentials(missing: Path) -> dict[str, str]:
    """Variables under which boto3 finds no credentials: none set, `missing` (a path that does
    not exist) as the credentials and config files, no instance metadata."""
    return {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SESSION_TOKEN": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(missing),
        "AWS_CONFIG_FILE": str(missing),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _status(cli, *args):
    r = cli("status", "--json", *args)
    assert r.code == 0, r.err
    return json.loads(r.out)["environments"]


def test_lifecycle_journey(cli):
    r = cli("up", "journey", "--no-provision", "--yes")
    assert r.code == 0, r.err
    assert "journey is running" in r.err and "dlenv ssh journey" in r.err
    assert "Traceback" not in r.err

    [env] = [e for e in _status(cli) if e["name"] == "journey"]
    assert env["state"] == "running" and env["type"] == "g4dn.xlarge" and env["gpu"] == "T4 16 GB"
    assert env["price_per_hour"] > 0 and env["cost_so_far"] >= 0 and env["market"] == "on-demand"

    again = cli("up", "journey", "--no-provision", "--yes")
    assert again.code == 0 and "already running" in again.err
    assert len(dlenv_resources("us-east-1", "journey", cli.endpoint)["instances"]) == 1

    ssh_config = (cli.home / ".ssh" / "config").read_text()
    assert "Include " in ssh_config
    include = ssh_config.split("Include ", 1)[1].split("\n", 1)[0].strip('"')  # quoted: a space
    assert "Host dlenv-journey" in Path(include).read_text()

    assert cli("stop", "journey").code == 0
    assert _status(cli, "journey")[0]["state"] == "stopped"
    r = cli("start", "journey")
    assert r.code == 0 and "running" in r.err
    table = cli("status")
    assert table.code == 0 and "journey" in table.out and "g4dn.xlarge" in table.out

    r = cli("down", "journey", "--yes")
    assert r.code == 0, r.err
    assert dlenv_resources("us-east-1", "journey", cli.endpoint) == NOTHING
    assert "Host dlenv-journey" not in Path(include).read_text()
    assert not [e for e in _status(cli) if e["name"] == "journey"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["up", "bad1", "-t", "g4dn.xlarg", "--yes"], 2, "did you mean g4dn.xlarge?"),
        (
            ["up", "bad2", "-t", "p5e.48xlarge", "--yes"],
            2,
            "p5e.48xlarge is not offered in us-east-1",
        ),
        (["up", "bad3", "--allow-cidr", "10.0.0.300/32", "--yes"], 2, "is not a valid CIDR"),
        (["up", "bad4", "--no-provision"], 2, "pass --yes"),
        (["up", "Bad_Name", "--yes"], 2, "is not valid"),
        (["up", "bad5", "--disk", "2", "--yes"], 2, "out of range"),
        (["up", "bad6", "--ami", "ami-0000000000000000f", "--yes"], 2, "does not exist"),
        (["up", "bad7", "-t", "p3.2xlarge", "--yes"], 2, "p3.2xlarge is not supported"),
        (["down", "nosuch", "--yes"], 1, "no environment named 'nosuch'"),
        (["ssh", "nosuch"], 1, "no environment named 'nosuch'"),
        (["stop", "nosuch"], 1, "no environment named 'nosuch'"),
        (["status", "nosuch"], 1, "no environment named 'nosuch'"),
    ],
)
def test_bad_input(cli, args, code, message):
    before = any_dlenv_resources("us-east-1", cli.endpoint)
    r = cli(*args)
    assert r.code == code, (r.out, r.err)
    assert message in r.err
    assert "Traceback" not in r.err
    lines = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.err
    assert any_dlenv_resources("us-east-1", cli.endpoint) == before


def test_missing_credentials_say_how_to_configure(cli, tmp_path):
    env = _no_credentials(tmp_path / "none")
    r = cli("status", env=env)
    assert r.code == 1 and "no AWS credentials found" in r.err and "aws configure" in r.err
    assert "Traceback" not in r.err
    debug = cli("--debug", "status", env=env)
    assert "Traceback" in debug.err


def test_missing_region(cli):
    r = cli("status", env={"AWS_DEFAULT_REGION": ""})
    assert r.code == 2 and "no AWS region configured" in r.err and "--region" in r.err


def test_volta_is_refused_before_any_aws_call(cli, tmp_path):
    """No credentials and a dead endpoint: had `up`/`bake` asked AWS anything first, the error
    would be about credentials or the connection, not the GPU."""
    env = {**_no_credentials(tmp_path / "none"), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    for args in (
        ("up", "volta", "-t", "p3.2xlarge", "--yes"),
        ("up", "volta", "-t", "p3dn.24xlarge", "--yes"),
    ):
        r = cli(*args, env=env)
        assert r.code == 2, (r.out, r.err)
        errors = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "is not supported" in errors[0] and "sm_70" in errors[0]
        assert "g4dn (T4, sm_75" in r.err and "Traceback" not in r.err
        assert "credentials" not in r.err


def test_prices_and_config_need_no_aws(cli):
    r = cli("prices", "--json", "--family", "p5")
    data = json.loads(r.out)
    assert {t["type"] for t in data["types"]} == {"p5.4xlarge", "p5.48xlarge"}
    volta = json.loads(cli("prices", "--json", "--family", "p3").out)
    assert volta["types"] == [] and {u["type"] for u in volta["unsupported"]} == {
        "p3.2xlarge",
        "p3.8xlarge",
        "p3.16xlarge",
    }
    table = cli("prices")
    assert table.code == 0 and "g4dn.xlarge" in table.out and "p3.2xlarge" not in table.out
    assert "not listed: p3" in table.err and "CUDA 13" in table.err
    (cli.home.parent / "config").mkdir()
    (cli.home.parent / "config" / "dlenv.toml").write_text('instance = "g5.xlarge"\ndisk = 200\n')
    cfg = json.loads(cli("config", "--json", env={"DLENV_DISK": "300"}).out)
    assert cfg["instance"]["value"] == "g5.xlarge" and cfg["instance"]["source"].endswith(
        "dlenv.toml"
    )
    assert cfg["disk"] == {"value": 300, "source": "DLENV_DISK"}
    bad = cli("config", env={"DLENV_DISK": "lots"})
    assert bad.code == 2 and "DLENV_DISK: disk = 'lots' is not an integer" in bad.err


HEAVY = ("boto3", "botocore", "paramiko", "fabric", "docker", "invoke", "moto")


@pytest.mark.parametrize(
    "cmd",
    [
        [],
        ["up"],
        ["status"],
        ["down"],
        ["ssh"],
        ["doctor"],
        ["prices"],
        ["provision"],
        ["local"],
        ["build"],
        ["smoke-test"],
        ["run"],
    ],
)
def test_help_imports_no_sdk(cli, cmd):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dlenv", *cmd, "--help"],
        capture_output=True,
        text=True,
        env=cli.env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_doctor_reports_each_check(cli):
    r = cli("doctor", "--json")
    data = json.loads(r.out)
    checks = {c["name"]: c for c in data["checks"]}
    assert (
        checks["credentials"]["status"] == "OK"
        and "123456789012" in checks["credentials"]["detail"]
    )
    assert checks["region"]["detail"] == "us-east-1"
    assert checks["ssh client"]["status"] in {"OK", "FAIL"}
    # moto has no Service Quotas for EC2: unreadable quota is a warning, never a failure
    assert checks["G/VT on-demand vCPU quota"]["status"] == "WARN"
    assert r.code == (1 if not data["ok"] else 0)
    no_creds = cli("doctor", "--json", env=_no_credentials(Path("/nonexistent")))
    failed = {c["name"]: c for c in json.loads(no_creds.out)["checks"]}
    assert no_creds.code == 1 and "aws configure" in failed["credentials"]["detail"]


def test_count_launches_numbered_environments_and_down_takes_several(cli):
    r = cli("up", "node", "--count", "2", "--no-provision", "--yes")
    assert r.code == 0, r.err
    names = sorted(e["name"] for e in _status(cli) if e["name"].startswith("node-"))
    assert names == ["node-1", "node-2"]
    bad = cli("up", "Node", "--count", "2", "--no-provision", "--yes")
    assert bad.code == 2 and "is not valid" in bad.err
    r = cli("down", "node-1", "node-2", "--yes")
    assert r.code == 0, r.err
    for name in ("node-1", "node-2"):
        assert dlenv_resources("us-east-1", name, cli.endpoint) == NOTHING
