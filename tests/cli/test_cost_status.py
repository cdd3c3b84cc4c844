"""What is being paid for, through the real CLI against moto's server: `status` adds disks of
stopped environments and baked images to the running $/h, and shows each budget; `dlenv budget`
refuses cleanly where it cannot act (the budget lives on the machine)."""

from __future__ import annotations

import json


def _status(cli, *args):
    r = cli("status", "--json", *args)
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_status_counts_disks_and_running_hours(cli) -> None:
    r = cli("up", "costly", "--no-provision", "--yes", "--disk", "120")
    assert r.code == 0, r.err
    data = _status(cli)
    [env] = [e for e in data["environments"] if e["name"] == "costly"]
    assert env["disk_gb"] == 120 and env["disk_per_month"] == 9.6, env
    assert env["budget_usd"] is None
    assert data["totals"]["running_per_hour"] >= env["price_per_hour"] > 0
    assert data["totals"]["disks_per_month"] >= 9.6 and data["images"] == []

    assert cli("stop", "costly").code == 0
    data = _status(cli)
    [env] = [e for e in data["environments"] if e["name"] == "costly"]
    assert env["state"] == "stopped" and env["disk_per_month"] == 9.6
    table = cli("status")
    assert table.code == 0
    text = table.out + table.err
    assert "9.60" in text and "GB gp3)" in text, text
    assert "storage: " in text and "$/month" in text and "running now: " in text, text

    # the budget is enforced by the machine: a stopped one cannot take it
    r = cli("budget", "costly", "50")
    assert r.code != 0 and "costly is stopped: the budget lives on the machine" in r.err, r.err
    assert "dlenv start costly" in r.err and "Traceback" not in r.err
    for bad in ("-5", "0", "lots", "1e9", "12.345"):
        r = cli("budget", "costly", bad)
        assert r.code != 0 and "Traceback" not in r.err, r.err
        assert "US dollars" in r.err or "No such option" in r.err, r.err
    r = cli("down", "costly", "--yes", "--discard-changes")
    assert r.code == 0, r.err


def test_start_without_capacity_names_the_ways_out_and_changes_type(cli) -> None:
    import boto3

    from harness.aws_proxy import AwsProxy

    r = cli("up", "full", "--no-provision", "--yes", "-t", "g5.xlarge")
    assert r.code == 0, r.err
    assert cli("stop", "full").code == 0
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=cli.endpoint)
    with AwsProxy(cli.endpoint) as proxy:
        proxy.fail(
            "StartInstances",
            "InsufficientInstanceCapacity",
            "We currently do not have sufficient g5.xlarge capacity in the Availability Zone "
            "you requested (us-east-1a).",
            times=1000,  # the zone stays full throughout
        )
        r = cli("start", "full", env={"AWS_ENDPOINT_URL": proxy.url})
        # asked once: the capacity answer (HTTP 500) is final, not retried by botocore for a
        # minute and a half before the user hears the ways out
        assert proxy.count("StartInstances") == 1, proxy.seen
    assert r.code != 0 and "Traceback" not in r.err, r.err
    assert "AWS has no capacity for g5.xlarge" in r.err and "still stopped" in r.err, r.err
    assert "dlenv start full --instance g" in r.err, r.err  # a compatible type, named
    assert "wait and run `dlenv start full` again" in r.err

    # a type the disk cannot run, or one the stack does not support: refused, nothing changed
    for bad, words in (("p3.2xlarge", "not supported"), ("g5.xlarg", "did you mean")):
        r = cli("start", "full", "--instance", bad)
        assert r.code != 0 and words in r.err and "Traceback" not in r.err, r.err
    [inst] = [
        i
        for res in ec2.describe_instances(Filters=[{"Name": "tag:dlenv:name", "Values": ["full"]}])[
            "Reservations"
        ]
        for i in res["Instances"]
    ]
    assert inst["InstanceType"] == "g5.xlarge" and inst["State"]["Name"] == "stopped"

    r = cli("start", "full", "--instance", "g6.xlarge")
    assert r.code == 0, r.err
    assert (
        "type g5.xlarge" in r.err
        and "-> g6.xlarge" in r.err
        and "disk and files unchanged" in r.err
    )
    data = _status(cli, "full")
    [env] = data["environments"]
    assert env["type"] == "g6.xlarge" and env["state"] == "running", env
    r = cli("start", "full", "--instance", "g5.xlarge")
    assert r.code != 0 and "only while stopped" in r.err, r.err
    assert cli("down", "full", "--yes", "--discard-changes").code == 0
