"""`dlenv sync NAME` and the `dlenv down` guard through the real CLI: moto's EC2 for the instance,
a systemd host container behind `ssh_proxy_command` for its SSH (host keys read from the console,
as on EC2), a real rsync between this machine and the container.

The guard refuses while files in ~/work changed since the last `sync --down`, naming them and the
fix; refuses a stopped environment (it cannot list) and an unreachable one; `--yes` alone never
discards; after `sync --down` (or with --discard-changes) `down` goes through.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from awsfake import console_with_host_keys, dlenv_resources
from instancehost import wire

pytestmark = [pytest.mark.docker, pytest.mark.hosts]

NAME = "syncbox"
WORK = "/home/dlenv/work"


def test_sync_then_down_guard(cli, host, tmp_path, monkeypatch) -> None:
    import moto.ec2.responses.general as general

    monkeypatch.setattr(general, "SAMPLE_CONSOLE_OUTPUT", console_with_host_keys(host.host_keys))
    cli.env.update(wire(Path(cli.env["DLENV_STATE_DIR"]), host, NAME))
    up = cli("up", NAME, "--no-provision", "--yes")
    assert up.code == 0, up.err

    project = tmp_path / "my project"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    (project / ".gitignore").write_text("*.ckpt\n")
    (project / "model.ckpt").write_bytes(b"x" * 100)
    synced = cli("sync", NAME, str(project), "--up", timeout=300)
    assert synced.code == 0, synced.err
    assert "host keys read from the instance console" in synced.err
    assert host.exec(f"test -f {WORK}/train.py && test ! -e {WORK}/model.ckpt").returncode == 0

    # work done in the Lab, never brought back: refused, naming the file and the fix
    host.exec(f"echo 0.9 > {WORK}/results.txt", check=True, user="dlenv")
    refused = cli("down", NAME, "--yes", timeout=300)
    assert refused.code == 1, refused.err
    assert "1 file(s) in ~/work changed" in refused.err and "results.txt" in refused.err
    assert "train.py" not in refused.err  # uploaded copies of local files count as saved
    assert f"dlenv sync {NAME} --down" in refused.err and "--discard-changes" in refused.err
    assert "Traceback" not in refused.err
    assert len(dlenv_resources("us-east-1", NAME, cli.endpoint)["instances"]) == 1

    # stopped: it cannot be listed, so refused the same way; stop says the files stay
    stopped = cli("stop", NAME, timeout=300)
    assert stopped.code == 0 and "everything in ~/work" in stopped.err, stopped.err
    refused = cli("down", NAME, "--yes")
    assert refused.code == 1 and f"{NAME} is stopped" in refused.err, refused.err
    assert "start it to check" in refused.err and "--discard-changes" in refused.err
    assert cli("start", NAME, timeout=300).code == 0

    back = tmp_path / "back"
    down_sync = cli("sync", NAME, str(back), "--down", timeout=300)
    assert down_sync.code == 0, down_sync.err
    assert (back / "results.txt").read_text() == "0.9\n"
    assert host.exec("test -e /home/dlenv/.local/state/dlenv/synced-down").returncode == 0

    gone = cli("down", NAME, "--yes", timeout=300)
    assert gone.code == 0, gone.err
    assert "nothing in ~/work changed since the last sync down" in gone.err
    assert dlenv_resources("us-east-1", NAME, cli.endpoint)["instances"] == []


def test_unreachable_needs_discard_changes(cli) -> None:
    """An environment that may hold work (it was provisioned) but cannot be reached."""
    import boto3

    name = "lostbox"
    cli.env.update(DLENV_SSH_PROXY_COMMAND="false", DLENV_SSH_TIMEOUT="5")
    assert cli("up", name, "--no-provision", "--yes").code == 0
    never = cli("status", "--json")
    [env] = [e for e in json.loads(never.out)["environments"] if e["name"] == name]
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=cli.endpoint)
    ec2.create_tags(Resources=[env["instance_id"]], Tags=[{"Key": "dlenv:work", "Value": "yes"}])

    refused = cli("down", name, "--yes", timeout=300)
    assert refused.code == 1 and "to list the files" in refused.err, refused.err
    assert "--discard-changes" in refused.err and "Traceback" not in refused.err
    unasked = cli("down", name, "--discard-changes")  # still asks: no terminal, no --yes
    assert unasked.code == 2 and "--yes" in unasked.err, unasked.err
    gone = cli("down", name, "--discard-changes", "--yes")
    assert gone.code == 0, gone.err
    assert dlenv_resources("us-east-1", name, cli.endpoint)["instances"] == []


def test_bad_sync_and_workdir_usage_is_one_line(cli, tmp_path) -> None:
    both = cli("sync", "somebox", "--up", "--down")
    assert both.code == 2 and "say which one way" in both.err, both.err
    neither = cli("sync", "--up")
    assert neither.code == 2 and "NAME or --host" in neither.err, neither.err
    launch_only = cli("up", "wdbox", "--no-provision", "--workdir", str(tmp_path), "--yes")
    assert launch_only.code == 1 and "--no-provision skips it" in launch_only.err, launch_only.err
    assert dlenv_resources("us-east-1", "wdbox", cli.endpoint)["instances"] == []
    for res in (both, neither, launch_only):
        assert "Traceback" not in res.err
