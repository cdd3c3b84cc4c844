"""`dlenv up NAME --nodes N` / `status` / `down NAME` through the real CLI against moto's server.

What moto does not model (placement groups; Placement and InterfaceType in RunInstances) is
checked where it shows: the placement-group calls get a faithful fake (tests/moto_placement.py),
and the RunInstances request itself is read at an HTTP proxy in front of moto
(tests/harness/aws_proxy.py), which also answers with AWS's capacity error when told to.
"""

# ruff: noqa: F811  (the fixtures imported below are the tests' parameters)
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from harness.aws_proxy import AwsProxy
from moto_placement import placement_groups  # noqa: F401  (fixture)
from motocli import cli, moto_server  # noqa: F401  (fixtures)

REGION = "us-east-1"


def _ec2(cli: Any) -> Any:
    return boto3.client("ec2", region_name=REGION, endpoint_url=cli.endpoint)


def _nodes(cli: Any, cluster: str) -> list[dict[str, Any]]:
    live = ["pending", "running", "stopping", "stopped", "shutting-down"]
    found = _ec2(cli).describe_instances(
        Filters=[
            {"Name": "tag:dlenv:cluster", "Values": [cluster]},
            {"Name": "instance-state-name", "Values": live},
        ]
    )["Reservations"]
    return [i for r in found for i in r["Instances"]]


def _left(cli: Any, cluster: str, groups: dict[str, Any]) -> dict[str, list[str]]:
    """Everything of the cluster still in AWS and on this machine (nothing, after down)."""
    ec2 = _ec2(cli)
    names = {f"dlenv-{cluster}", f"dlenv-cluster-{cluster}"}
    keys_dir = Path(cli.env["DLENV_STATE_DIR"]) / "keys"
    return {
        "instances": [i["InstanceId"] for i in _nodes(cli, cluster)],
        "security_groups": [
            g["GroupName"]
            for g in ec2.describe_security_groups()["SecurityGroups"]
            if g["GroupName"] in names
        ],
        "placement_groups": [n for n in groups if n == f"dlenv-{cluster}"],
        "key_pairs": [
            k["KeyName"]
            for k in ec2.describe_key_pairs()["KeyPairs"]
            if k["KeyName"] == f"dlenv-{cluster}"
        ],
        "local_keys": sorted(
            p.name for p in keys_dir.glob(f"dlenv-{cluster}*") if keys_dir.is_dir()
        ),
    }


NOTHING = {
    "instances": [],
    "security_groups": [],
    "placement_groups": [],
    "key_pairs": [],
    "local_keys": [],
}


def _run_instances(proxy: AwsProxy) -> list[dict[str, list[str]]]:
    return [fields for action, fields in proxy.requests if action == "RunInstances"]


def test_nodes_come_from_one_call_in_one_placement_group_and_down_leaves_nothing(
    cli: Any, placement_groups: dict[str, Any]
) -> None:
    with AwsProxy(cli.endpoint) as proxy:
        r = cli(
            "up", "tc", "--nodes", "3", "--no-provision", "--yes", "-t", "g4dn.xlarge",
            env={"AWS_ENDPOINT_URL": proxy.url},
        )  # fmt: skip
        assert r.code == 0, r.err
        [call] = _run_instances(proxy)  # all three nodes in one RunInstances call
    assert call["MinCount"] == ["3"] and call["MaxCount"] == ["3"], call
    assert call["Placement.GroupName"] == ["dlenv-tc"], call
    assert not any(k.endswith("InterfaceType") for k in call), call  # g4dn.xlarge: no EFA
    assert placement_groups["dlenv-tc"]["Strategy"] == "cluster"

    nodes = _nodes(cli, "tc")
    tags = [{t["Key"]: t["Value"] for t in i["Tags"]} for i in nodes]
    assert sorted(t["dlenv:name"] for t in tags) == ["tc-0", "tc-1", "tc-2"]
    assert sorted(t["dlenv:rank"] for t in tags) == ["0", "1", "2"]
    assert {t["dlenv:nodes"] for t in tags} == {"3"}
    assert len({i["Placement"]["AvailabilityZone"] for i in nodes}) == 1  # one zone

    ec2 = _ec2(cli)
    [group] = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["dlenv-cluster-tc"]}]
    )["SecurityGroups"]
    # the only rule: all traffic from the group itself
    [rule] = group["IpPermissions"]
    assert rule["IpProtocol"] == "-1" and not rule.get("IpRanges"), rule
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [group["GroupId"]]
    # every node is in the SSH group and the cluster group
    [ssh] = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["dlenv-tc"]}])[
        "SecurityGroups"
    ]
    for inst in nodes:
        assert {ssh["GroupId"], group["GroupId"]} == {
            g["GroupId"] for n in inst["NetworkInterfaces"] for g in n["Groups"]
        }

    status = cli("status")
    assert status.code == 0 and "cluster tc: 3/3 nodes running" in status.err, status.err
    data = json.loads(cli("status", "tc", "--json").out)
    assert [e["name"] for e in data["environments"]] == ["tc-0", "tc-1", "tc-2"]
    assert data["clusters"] == [
        {"name": "tc", "nodes": 3, "running": 3, "state": "complete", "missing": []}
    ]
    node = json.loads(cli("status", "tc-1", "--json").out)  # one node: no cluster line
    assert [e["name"] for e in node["environments"]] == ["tc-1"] and node["clusters"] == []
    # each node is an environment: its own key file, its own ssh entry
    keys_dir = Path(cli.env["DLENV_STATE_DIR"]) / "keys"
    for k in range(3):
        assert (keys_dir / f"dlenv-tc-{k}").is_file()

    r = cli("down", "tc", "--yes")
    assert r.code == 0, r.err
    assert "cluster tc removed: 3 node(s)" in r.err and "placement group" in r.err, r.err
    assert _left(cli, "tc", placement_groups) == NOTHING


def test_efa_interfaces_on_efa_types_only(cli: Any, placement_groups: dict[str, Any]) -> None:
    with AwsProxy(cli.endpoint) as proxy:
        env = {"AWS_ENDPOINT_URL": proxy.url}
        r = cli("up", "te", "--nodes", "2", "--no-provision", "--yes", "-t", "g5.48xlarge", env=env)
        assert r.code == 0, r.err
        r = cli("up", "tn", "--nodes", "2", "--no-provision", "--yes", "-t", "g5.48xlarge",
                "--no-efa", env=env)  # fmt: skip
        assert r.code == 0, r.err
        efa, plain = _run_instances(proxy)
        before = len(proxy.seen)
        # --efa on a type without EFA: refused before anything is created
        r = cli("up", "tx", "--nodes", "2", "--no-provision", "--yes", "-t", "g4dn.xlarge",
                "--efa", env=env)  # fmt: skip
        assert r.code != 0 and "Traceback" not in r.err, r.err
        assert "g4dn.xlarge has no EFA" in r.err and "drop --efa" in r.err, r.err
        assert not [a for a in proxy.seen[before:] if a.startswith(("Create", "Run", "Import"))]
    assert efa["NetworkInterface.1.InterfaceType"] == ["efa"], efa
    assert efa["NetworkInterface.1.DeviceIndex"] == ["0"], efa
    assert efa["NetworkInterface.1.AssociatePublicIpAddress"] == ["true"], efa
    assert "NetworkInterface.1.InterfaceType" not in plain, plain
    # recorded on the nodes: a later `up` provisions the efa step only where the interface is
    for name, efa_tag in (("te", "yes"), ("tn", "no")):
        tags = [{t["Key"]: t["Value"] for t in i["Tags"]} for i in _nodes(cli, name)]
        assert {t["dlenv:efa"] for t in tags} == {efa_tag}, tags
    assert _left(cli, "tx", placement_groups) == NOTHING
    for name in ("te", "tn"):
        assert cli("down", name, "--yes").code == 0
        assert _left(cli, name, placement_groups) == NOTHING


def test_no_capacity_for_all_nodes_rolls_everything_back(
    cli: Any, placement_groups: dict[str, Any]
) -> None:
    with AwsProxy(cli.endpoint) as proxy:
        proxy.fail(
            "RunInstances",
            "InsufficientInstanceCapacity",
            "We currently do not have sufficient g5.12xlarge capacity in the Availability Zone "
            "you requested.",
            times=1000,  # every zone stays full
        )
        r = cli(
            "up", "tf", "--nodes", "4", "--no-provision", "--yes", "-t", "g5.12xlarge",
            env={"AWS_ENDPOINT_URL": proxy.url},
        )  # fmt: skip
        tried = proxy.count("RunInstances")
    assert r.code != 0 and "Traceback" not in r.err, r.err
    # one call per zone, each answer final: botocore would otherwise retry each (HTTP 500) up to
    # 10 times with back-off, about a minute and a half per zone before the user hears anything
    zones = r.err.count("trying the next zone")
    assert zones >= 2 and tried == zones, (tried, r.err)
    assert "no capacity for 4 x g5.12xlarge together in one placement group" in r.err, r.err
    assert "fewer nodes (--nodes 3)" in r.err and "Capacity Reservation" in r.err, r.err
    assert "rolled back:" in r.err and "placement group dlenv-tf" in r.err, r.err
    assert _left(cli, "tf", placement_groups) == NOTHING


def test_a_lost_node_shows_in_status_and_down_still_finishes(
    cli: Any, placement_groups: dict[str, Any]
) -> None:
    r = cli("up", "tl", "--nodes", "3", "--no-provision", "--yes", "-t", "g4dn.xlarge")
    assert r.code == 0, r.err
    [lost] = [
        i["InstanceId"]
        for i in _nodes(cli, "tl")
        if {"Key": "dlenv:name", "Value": "tl-1"} in i["Tags"]
    ]
    _ec2(cli).terminate_instances(InstanceIds=[lost])  # behind dlenv's back
    status = cli("status")
    assert "cluster tl: 2/3 nodes running (partial: tl-1 lost or not running)" in status.err, (
        status.err
    )
    [view] = json.loads(cli("status", "tl", "--json").out)["clusters"]
    assert view["state"] == "partial" and view["missing"] == ["tl-1"], view
    # up again does not pretend: it names the partial cluster and the way out
    again = cli("up", "tl", "--nodes", "3", "--no-provision", "--yes", "-t", "g4dn.xlarge")
    assert again.code != 0 and "partial" in again.err and "dlenv down tl" in again.err
    r = cli("down", "tl", "--yes")
    assert r.code == 0, r.err
    assert "tl-1 already gone" in r.err and "cluster tl removed: 2 node(s)" in r.err, r.err
    assert _left(cli, "tl", placement_groups) == NOTHING


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--nodes", "1"], "--nodes"),
        (["--nodes", "2", "--count", "2"], "--count and --nodes do not go together"),
        (["--efa"], "--efa/--no-efa applies to clusters"),
        (["--no-efa"], "--efa/--no-efa applies to clusters"),
    ],
)
def test_bad_cluster_flags_are_refused_before_any_call(
    cli: Any, placement_groups: dict[str, Any], args: list[str], words: str
) -> None:
    with AwsProxy(cli.endpoint) as proxy:
        r = cli("up", "tb", *args, "--no-provision", "--yes", env={"AWS_ENDPOINT_URL": proxy.url})
        assert r.code != 0 and "Traceback" not in r.err and words in r.err, r.err
        assert not [a for a in proxy.seen if a.startswith(("Create", "Run", "Import"))]
    long = "a" * 39
    r = cli("up", long, "--nodes", "2", "--no-provision", "--yes")
    assert r.code != 0 and "too long for its node names" in r.err, r.err


def test_the_efa_step_is_in_the_plan_of_efa_nodes_only() -> None:
    from dlenv.provision.manifest import load_stack
    from dlenv.provision.options import ProvisionOptions
    from dlenv.provision.osinfo import HostFacts, OsInfo
    from dlenv.provision.steps import build_steps

    facts = HostFacts(
        OsInfo("ubuntu", "24.04"), kernel="6.8.0-1015-aws", nvidia_pci=("x 10de:2330",)
    )
    plain = build_steps(load_stack(), ProvisionOptions(), facts)
    assert "efa" not in [s.name for s in plain.steps]
    efa = {s.name: s for s in build_steps(load_stack(), ProvisionOptions(efa=True), facts).steps}
    assert efa["efa"].skip_reason is None
    assert "fi_info -p efa" in efa["efa"].check and "efa_installer.sh -y" in efa["efa"].apply
    no_gpu = HostFacts(OsInfo("ubuntu", "24.04"), kernel="6.8.0-1015-aws")
    cpu = {s.name: s for s in build_steps(load_stack(), ProvisionOptions(efa=True), no_gpu).steps}
    assert cpu["efa"].skip_reason == "no NVIDIA GPU"
