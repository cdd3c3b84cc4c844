"""up / stop / start / down against moto, including failover and rollback."""

from __future__ import annotations

import botocore.exceptions
import pytest

from awsfake import dlenv_resources
from dlenv.errors import AwsError, CapacityError, UsageError
from dlenv.ops import lifecycle, power
from dlenv.ops.down import down
from dlenv.ops.up import up


def _describe(aws, instance_id):
    return aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def _client_error(code, message="injected"):
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message}}, "RunInstances"
    )


def test_up_launches_with_safe_defaults(aws, settings, terminal):
    result = up("box", settings, terminal, yes=True, wait_ssh=False)
    assert result.action == "launched"
    inst = _describe(aws, result.env.instance_id)
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["dlenv:name"] == "box" and tags["Name"] == "dlenv-box" and "dlenv:stack" in tags
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["KeyName"] == "dlenv-box" and inst["InstanceType"] == "g4dn.xlarge"
    assert inst["ImageId"] == aws.ubuntu_ids["24.04"]
    vol_id = inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    vol = aws.ec2.describe_volumes(VolumeIds=[vol_id])["Volumes"][0]
    assert vol["Encrypted"] and vol["VolumeType"] == "gp3" and vol["Size"] == 100
    attr = aws.ec2.describe_instance_attribute(
        InstanceId=inst["InstanceId"], Attribute="instanceInitiatedShutdownBehavior"
    )
    assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"
    sg = aws.ec2.describe_security_groups(GroupIds=[inst["SecurityGroups"][0]["GroupId"]])[
        "SecurityGroups"
    ][0]
    assert [r["CidrIp"] for p in sg["IpPermissions"] for r in p["IpRanges"]] == ["198.51.100.7/32"]


def test_up_twice_is_a_no_op_and_stopped_env_is_started(aws, settings, terminal):
    first = up("box", settings, terminal, yes=True, wait_ssh=False)
    again = up("box", settings, terminal, yes=True, wait_ssh=False)
    assert again.action == "already-running" and again.env.instance_id == first.env.instance_id
    power.stop("box", settings, terminal)
    resumed = up("box", settings, terminal, yes=True, wait_ssh=False)
    assert resumed.action == "started" and resumed.env.state == "running"
    assert len(dlenv_resources("us-east-1", "box")["instances"]) == 1


def test_spot_persistent_with_stop_behaviour(aws, settings, terminal, monkeypatch):
    _patch_session(monkeypatch, aws)
    calls = _fail_first(aws, monkeypatch, [])
    settings.spot = True
    env = up("box", settings, terminal, yes=True, wait_ssh=False).env
    assert _describe(aws, env.instance_id).get("InstanceLifecycle") == "spot"
    assert calls[0]["InstanceMarketOptions"]["SpotOptions"] == {
        "SpotInstanceType": "persistent",
        "InstanceInterruptionBehavior": "stop",
    }
    assert calls[0]["InstanceInitiatedShutdownBehavior"] == "stop"
    assert env.market == "spot-persistent"
    power.stop("box", settings, terminal)  # persistent spot can stop
    down("box", settings, terminal)
    assert dlenv_resources("us-east-1", "box") == {
        "instances": [],
        "security_groups": [],
        "key_pairs": [],
        "volumes": [],
    }


def test_one_time_spot_cannot_stop(aws, settings, terminal, monkeypatch):
    _patch_session(monkeypatch, aws)
    calls = _fail_first(aws, monkeypatch, [])
    settings.spot, settings.spot_type = True, "one-time"
    up("box", settings, terminal, yes=True, wait_ssh=False)
    assert calls[0]["InstanceInitiatedShutdownBehavior"] == "terminate"
    with pytest.raises(UsageError, match="one-time spot"):
        power.stop("box", settings, terminal)


def _fail_first(aws, monkeypatch, codes):
    """Make the first len(codes) run_instances calls fail with AWS's real error codes."""
    real = aws.ec2.run_instances
    calls = []

    def run_instances(**kw):
        calls.append(kw)
        if len(calls) <= len(codes):
            raise _client_error(codes[len(calls) - 1])
        return real(**kw)

    monkeypatch.setattr(aws.ec2, "run_instances", run_instances)
    return calls


def _patch_session(monkeypatch, aws):
    import dlenv.cloud.session as session

    monkeypatch.setattr(session, "from_settings", lambda settings: aws)


def test_capacity_failover_tries_next_zone(aws, settings, terminal, monkeypatch, capsys):
    _patch_session(monkeypatch, aws)
    calls = _fail_first(aws, monkeypatch, ["InsufficientInstanceCapacity"])
    env = up("box", settings, terminal, yes=True, wait_ssh=False).env
    assert len(calls) == 2 and calls[0]["SubnetId"] != calls[1]["SubnetId"]
    assert env.state == "running"
    assert "trying the next zone" in capsys.readouterr().err


def test_spot_falls_back_to_on_demand(aws, settings, terminal, monkeypatch, capsys):
    _patch_session(monkeypatch, aws)
    settings.spot, settings.spot_fallback = True, "on-demand"
    zones = len(lifecycle_zones(aws))
    calls = _fail_first(aws, monkeypatch, ["InsufficientInstanceCapacity"] * zones)
    env = up("box", settings, terminal, yes=True, wait_ssh=False).env
    assert "InstanceMarketOptions" in calls[0] and "InstanceMarketOptions" not in calls[-1]
    assert not env.spot
    assert "falling back to on-demand" in capsys.readouterr().err


def lifecycle_zones(aws):
    from dlenv.cloud.launch import offered_zones

    return offered_zones(aws, "g4dn.xlarge")


def test_no_capacity_anywhere_rolls_back(aws, settings, terminal, monkeypatch):
    _patch_session(monkeypatch, aws)
    _fail_first(aws, monkeypatch, ["InsufficientInstanceCapacity"] * 10)
    with pytest.raises(CapacityError) as err:
        up("box", settings, terminal, yes=True, wait_ssh=False)
    assert "--spot" in err.value.hint
    assert dlenv_resources("us-east-1", "box") == {
        "instances": [],
        "security_groups": [],
        "key_pairs": [],
        "volumes": [],
    }


@pytest.mark.parametrize(
    ("code", "expect"),
    [
        ("VcpuLimitExceeded", "L-DB2E81BA"),
        ("PendingVerification", "verification"),
        ("UnauthorizedOperation", "IAM"),
        ("AuthFailure", "credentials"),
        ("OptInRequired", "opt-in"),
    ],
)
def test_launch_errors_are_translated_and_leave_nothing(
    aws, settings, terminal, monkeypatch, code, expect
):
    _patch_session(monkeypatch, aws)
    calls = _fail_first(aws, monkeypatch, [code] * 10)
    with pytest.raises(AwsError) as err:
        up("box", settings, terminal, yes=True, wait_ssh=False)
    assert len(calls) == 1, "non-capacity errors must not be retried in other zones"
    assert expect in err.value.message + err.value.hint
    assert dlenv_resources("us-east-1", "box") == {
        "instances": [],
        "security_groups": [],
        "key_pairs": [],
        "volumes": [],
    }


def test_vcpu_quota_hint_is_a_runnable_command(aws, settings, terminal, monkeypatch):
    _patch_session(monkeypatch, aws)
    settings.instance = "p4d.24xlarge"
    _fail_first(aws, monkeypatch, ["VcpuLimitExceeded"])
    with pytest.raises(AwsError) as err:
        up("box", settings, terminal, yes=True, wait_ssh=False)
    assert (
        "aws service-quotas request-service-quota-increase --service-code ec2 "
        "--quota-code L-417A185B --desired-value 96 --region us-east-1"
    ) in err.value.hint


def test_type_not_offered_in_region_names_regions(aws, settings, terminal):
    settings.instance = "p5e.48xlarge"
    with pytest.raises(UsageError) as err:
        up("box", settings, terminal, yes=True, wait_ssh=False)
    assert "not offered in us-east-1" in err.value.message
    assert "us-west-2" in err.value.hint
    assert dlenv_resources("us-east-1", "box")["key_pairs"] == []


def test_down_removes_everything_and_twice_is_an_error(aws, settings, terminal):
    up("box", settings, terminal, yes=True, wait_ssh=False)
    from dlenv.ssh import config as sshconfig

    assert sshconfig.has_entry("box")
    result = down("box", settings, terminal)
    assert result.instance and result.security_group and result.key_pair and result.ssh_entry
    assert dlenv_resources("us-east-1", "box") == {
        "instances": [],
        "security_groups": [],
        "key_pairs": [],
        "volumes": [],
    }
    assert not sshconfig.has_entry("box")
    from dlenv.errors import NotFoundError

    with pytest.raises(NotFoundError):
        down("box", settings, terminal)


def test_down_keep_key(aws, settings, terminal):
    up("box", settings, terminal, yes=True, wait_ssh=False)
    down("box", settings, terminal, keep_key=True)
    assert dlenv_resources("us-east-1", "box")["key_pairs"] == ["dlenv-box"]
    from dlenv.cloud.keys import private_key_path

    assert private_key_path("box").is_file()


def test_host_keys_survive_the_ip_change_of_a_restart(aws, settings, terminal):
    from dlenv.ssh import config as sshconfig
    from dlenv.ssh import known_hosts

    env = up("box", settings, terminal, yes=True, wait_ssh=False).env
    known_hosts.add_host_keys("dlenv-box", ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTest"])
    power.stop("box", settings, terminal)
    env2 = power.start("box", settings, terminal)
    entry = sshconfig.include_path().read_text()
    assert f"HostName {env2.public_ip}" in entry and "HostKeyAlias dlenv-box" in entry
    assert known_hosts.known_keys("dlenv-box") == [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTest"
    ]
    down("box", settings, terminal)
    assert known_hosts.known_keys("dlenv-box") == []
    assert env.instance_id == env2.instance_id


@pytest.mark.parametrize("name", ["Box", "my_box", "-x", "a" * 41, "box-"])
def test_bad_names(aws, settings, terminal, name):
    with pytest.raises(UsageError, match="not valid"):
        up(name, settings, terminal, yes=True, wait_ssh=False)


def test_no_tty_without_yes_asks_for_yes(aws, settings, terminal, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(UsageError) as err:
        up("box", settings, terminal, wait_ssh=False)
    assert "--yes" in err.value.hint
    assert dlenv_resources("us-east-1", "box")["key_pairs"] == []


def test_environment_remembers_its_provisioning_choices(aws, terminal, monkeypatch):
    """A later `up`/`provision` keeps the env's python manager unless a flag overrides it."""
    from dlenv import config

    first = config.load(
        {
            "region": "us-east-1",
            "allow_cidr": "198.51.100.7/32",
            "python": "uv",
            "idle_stop": 15,
            "frameworks": ["tensorflow", "jax"],
        },
        env={},
    )
    env = up("box", first, terminal, yes=True, wait_ssh=False).env
    assert env.tags["dlenv:python"] == "uv" and env.tags["dlenv:idle-stop"] == "15"
    assert env.tags["dlenv:frameworks"] == "tensorflow,jax"

    # a later run keeps them: the framework kernels stay in the Lab's list
    later = config.load({"region": "us-east-1"}, env={"DLENV_PYTHON": "conda"})
    up("box", later, terminal, yes=True, wait_ssh=False)
    assert (later.python, later.idle_stop) == ("uv", 15)
    assert later.frameworks == ["tensorflow", "jax"]
    assert later.sources["python"] == "tag dlenv:python"

    explicit = config.load({"region": "us-east-1", "python": "conda"}, env={})
    up("box", explicit, terminal, yes=True, wait_ssh=False)
    assert explicit.python == "conda"
    lifecycle.record_choices("box", explicit)
    tags = {
        t["Key"]: t["Value"]
        for t in aws.ec2.describe_instances(InstanceIds=[env.instance_id])["Reservations"][0][
            "Instances"
        ][0]["Tags"]
    }
    assert tags["dlenv:python"] == "conda"
