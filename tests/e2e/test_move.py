"""`dlenv start NAME --move` through the real CLI against moto's server: a stopped environment
whose zone has no capacity moves to another zone of the region (snapshot, image, new instance with
the same key, group, name and tags; the old instance, image and snapshot removed only once the new
one runs). AWS's error codes are injected by the test proxy where moto cannot produce them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import boto3

from harness.aws_proxy import AwsProxy

CAPACITY = (
    "We currently do not have sufficient g5.xlarge capacity in the Availability Zone you "
    "requested (us-east-1a). Our system will be working on provisioning additional capacity."
)


def _ec2(cli: Any) -> Any:
    return boto3.client("ec2", region_name="us-east-1", endpoint_url=cli.endpoint)


def _instances(
    ec2: Any, name: str, states: tuple[str, ...] = ("pending", "running", "stopping", "stopped")
) -> list[dict[str, Any]]:
    found = ec2.describe_instances(
        Filters=[
            {"Name": "tag:dlenv:name", "Values": [name]},
            {"Name": "instance-state-name", "Values": list(states)},
        ]
    )
    return [i for r in found["Reservations"] for i in r["Instances"]]


def _move_leftovers(ec2: Any, name: str) -> list[str]:
    filters = [
        {"Name": "tag:dlenv:name", "Values": [name]},
        {"Name": "tag-key", "Values": ["dlenv:move"]},
    ]
    snaps = ec2.describe_snapshots(OwnerIds=["self"], Filters=filters)["Snapshots"]
    images = ec2.describe_images(Owners=["self"], Filters=filters)["Images"]
    return [s["SnapshotId"] for s in snaps] + [i["ImageId"] for i in images]


def _tags(inst: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in inst.get("Tags", [])}


def _up_and_stop(cli: Any, name: str) -> dict[str, Any]:
    r = cli("up", name, "--no-provision", "--yes", "-t", "g5.xlarge", "--idle-stop", "45")
    assert r.code == 0, r.err
    assert cli("stop", name).code == 0
    [inst] = _instances(_ec2(cli), name)
    assert inst["State"]["Name"] == "stopped"
    return inst


def test_capacity_error_names_move_and_move_keeps_everything(cli) -> None:
    ec2 = _ec2(cli)
    old = _up_and_stop(cli, "mover")
    old_az = old["Placement"]["AvailabilityZone"]
    with AwsProxy(cli.endpoint) as proxy:
        proxy.fail("StartInstances", "InsufficientInstanceCapacity", CAPACITY, times=1000)
        r = cli("start", "mover", env={"AWS_ENDPOINT_URL": proxy.url})
    assert r.code != 0 and "Traceback" not in r.err, r.err
    assert "`dlenv start mover --move`" in r.err, r.err

    r = cli("start", "mover", "--move", timeout=300)
    assert r.code == 0, r.err
    [new] = _instances(ec2, "mover")
    new_az = new["Placement"]["AvailabilityZone"]
    assert new["InstanceId"] != old["InstanceId"] and new_az != old_az, (old_az, new_az)
    assert new["State"]["Name"] == "running" and new["InstanceType"] == "g5.xlarge"
    assert new["KeyName"] == old["KeyName"]
    assert [g["GroupId"] for g in new["SecurityGroups"]] == [
        g["GroupId"] for g in old["SecurityGroups"]
    ]
    kept = {k: v for k, v in _tags(old).items() if k != "dlenv:launch"}
    now = {k: v for k, v in _tags(new).items() if k != "dlenv:launch"}
    assert now == kept, (kept, now)  # name, user, os, stack, idle-stop, market: all carried
    assert "dlenv:move" not in _tags(new) and "dlenv:moved-from" not in _tags(new)
    [gone] = ec2.describe_instances(InstanceIds=[old["InstanceId"]])["Reservations"][0]["Instances"]
    assert gone["State"]["Name"] in {"shutting-down", "terminated"}
    assert _move_leftovers(ec2, "mover") == []
    assert f"moved {old_az} -> {new_az}" in r.err and "snapshot removed" in r.err, r.err
    # the ssh entry points at the new address; the old host keys are forgotten
    config = cli.home / ".ssh" / "dlenv" / "config"
    if config.exists():
        assert new.get("PublicIpAddress", "") in config.read_text()

    # a running environment does not move
    r = cli("start", "mover", "--move")
    assert r.code != 0 and "only a stopped environment moves" in r.err and "Traceback" not in r.err
    # bad input: one line, no traceback, nothing made
    r = cli("start", "mover", "--move", "--instance", "g6.xlarge")
    assert r.code == 2 and "two different ways out" in r.err and "Traceback" not in r.err, r.err
    r = cli("start", "nosuchbox", "--move")
    assert r.code != 0 and "no environment named 'nosuchbox'" in r.err, r.err
    assert "Traceback" not in r.err
    assert _move_leftovers(ec2, "mover") == []
    assert cli("down", "mover", "--yes", "--discard-changes").code == 0


def test_failed_launch_leaves_the_old_instance_untouched(cli) -> None:
    ec2 = _ec2(cli)
    old = _up_and_stop(cli, "stuck")
    with AwsProxy(cli.endpoint) as proxy:
        # AWS's code for a configuration a zone cannot run (a client error: no botocore retries)
        proxy.fail(
            "RunInstances",
            "Unsupported",
            "Your requested instance type (g5.xlarge) is not supported in your requested "
            "Availability Zone.",
            status=400,
            times=1000,
        )
        r = cli("start", "stuck", "--move", env={"AWS_ENDPOINT_URL": proxy.url}, timeout=300)
        assert proxy.count("CreateSnapshot") == 1 and proxy.count("RunInstances") >= 1
    assert r.code != 0 and "Traceback" not in r.err, r.err
    assert "the move did not happen" in r.err and f"{old['InstanceId']}), untouched" in r.err, r.err
    [inst] = _instances(ec2, "stuck")
    assert inst["InstanceId"] == old["InstanceId"] and inst["State"]["Name"] == "stopped"
    assert inst["Placement"] == old["Placement"] and _tags(inst) == _tags(old)
    assert _move_leftovers(ec2, "stuck") == []
    assert cli("down", "stuck", "--yes", "--discard-changes").code == 0


def _run_interrupted(cli: Any, proxy: AwsProxy, action: str, *args: str) -> tuple[int, str]:
    """Run the CLI through the proxy, hold its first `action` request, press Ctrl-C (SIGINT)
    while it is in flight, then let AWS carry it out; (exit code, stderr)."""
    hold = proxy.hold(action)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlenv", *args],
        env={**cli.env, "AWS_ENDPOINT_URL": proxy.url},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        hold.wait_arrived(120)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        hold.release(wait_done=30)  # the request was sent: AWS does it although nobody listens
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err


def test_ctrl_c_during_launch_rolls_back_what_the_move_made(cli) -> None:
    ec2 = _ec2(cli)
    old = _up_and_stop(cli, "halted")
    with AwsProxy(cli.endpoint) as proxy:
        code, err = _run_interrupted(cli, proxy, "RunInstances", "start", "halted", "--move")
    assert code == 130 and "Traceback" not in err, err
    assert "interrupted: undoing this move of halted" in err, err
    # the instance RunInstances made after the interrupt was found by its tag and removed too
    removed = err.split("removed what the move made: ", 1)[-1].split(";")[0]
    assert "instance i-" in removed and "image ami-" in removed and "snapshot snap-" in removed
    assert "nothing else remains" in err, err
    [inst] = _instances(ec2, "halted")
    assert inst["InstanceId"] == old["InstanceId"] and inst["State"]["Name"] == "stopped"
    assert _move_leftovers(ec2, "halted") == []
    assert cli("down", "halted", "--yes", "--discard-changes").code == 0


def test_ctrl_c_after_the_new_instance_runs_is_finished_by_a_rerun(cli) -> None:
    ec2 = _ec2(cli)
    old = _up_and_stop(cli, "halfway")
    with AwsProxy(cli.endpoint) as proxy:
        code, err = _run_interrupted(cli, proxy, "DeregisterImage", "start", "halfway", "--move")
    assert code == 130 and "Traceback" not in err, err
    assert "the clean-up of the old zone did not finish" in err, err
    assert "`dlenv start halfway --move` finishes it" in err, err
    [new] = _instances(ec2, "halfway")  # the old one went before the image's deregistration
    assert new["InstanceId"] != old["InstanceId"] and new["State"]["Name"] == "running"
    assert _tags(new)["dlenv:moved-from"] == old["InstanceId"]
    assert _move_leftovers(ec2, "halfway") != []  # the snapshot is still there

    r = cli("start", "halfway", "--move")
    assert r.code == 0, r.err
    assert "finishing the earlier move of halfway" in r.err, r.err
    [same] = _instances(ec2, "halfway")
    assert same["InstanceId"] == new["InstanceId"] and "dlenv:moved-from" not in _tags(same)
    assert _move_leftovers(ec2, "halfway") == []
    assert cli("down", "halfway", "--yes", "--discard-changes").code == 0
