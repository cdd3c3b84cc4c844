"""Issue-8 failures at the AWS boundary: quota preflight, changed caller IP, DLAMI."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from awsfake import dlenv_resources, put_public_parameter
from dlenv.cloud import ami, quota
from dlenv.errors import AwsError
from dlenv.ops import lifecycle
from dlenv.ops.up import up

NOTHING = {"instances": [], "security_groups": [], "key_pairs": [], "volumes": []}


def _quota(aws, value):
    stub = Stubber(aws.client("service-quotas"))
    stub.add_response(
        "get_service_quota",
        {"Quota": {"QuotaCode": "L-DB2E81BA", "Value": value}},
        {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"},
    )
    return stub


@pytest.fixture
def same_session(aws, monkeypatch):
    import dlenv.cloud.session as session

    monkeypatch.setattr(session, "from_settings", lambda settings: aws)
    return aws


def test_zero_quota_stops_before_anything_is_created(same_session, settings, terminal):
    aws = same_session
    with _quota(aws, 0.0), pytest.raises(AwsError) as err:
        up("box", settings, terminal, yes=True, wait_ssh=False)
    assert (
        "quota L-DB2E81BA (Running On-Demand G and VT instances) in us-east-1 is 0"
        in err.value.message
    )
    assert (
        "request-service-quota-increase --service-code ec2 --quota-code L-DB2E81BA --desired-value 4"
        in err.value.hint
    )
    assert dlenv_resources("us-east-1", "box") == NOTHING


def test_quota_counts_running_instances_of_the_family(same_session, settings, terminal):
    aws = same_session
    image = aws.ubuntu_ids["24.04"]
    aws.ec2.run_instances(ImageId=image, InstanceType="g5.2xlarge", MinCount=1, MaxCount=1)
    aws.ec2.run_instances(
        ImageId=image, InstanceType="m5.8xlarge", MinCount=1, MaxCount=1
    )  # other family
    used = quota.running_vcpus(aws, "G", spot=False)
    assert used == 8
    with _quota(aws, 8.0), pytest.raises(AwsError, match="with 8 in use"):
        up("box", settings, terminal, yes=True, wait_ssh=False)
    with _quota(aws, 12.0):
        assert up("box", settings, terminal, yes=True, wait_ssh=False).action == "launched"


def test_unreadable_quota_is_a_warning(same_session, settings, terminal, capsys):
    aws = same_session
    stub = Stubber(aws.client("service-quotas"))
    stub.add_client_error("get_service_quota", "AccessDeniedException", "no", 400)
    with stub:
        assert up("box", settings, terminal, yes=True, wait_ssh=False).action == "launched"
    assert "could not read the vCPU quota L-DB2E81BA" in capsys.readouterr().err


def test_allow_ip_replaces_the_rule(same_session, settings, terminal):
    aws = same_session
    env = up("box", settings, terminal, yes=True, wait_ssh=False).env
    settings.allow_cidr = "192.0.2.44"
    assert lifecycle.allow_ip("box", settings) == "192.0.2.44/32"
    sg = aws.ec2.describe_security_groups(GroupIds=env.security_groups)["SecurityGroups"][0]
    assert [r["CidrIp"] for p in sg["IpPermissions"] for r in p["IpRanges"]] == ["192.0.2.44/32"]


def test_dlami_resolves_through_its_public_parameter(aws):
    from awsfake import register_ubuntu

    image_id = register_ubuntu(aws.ec2, "22.04")
    put_public_parameter("us-east-1", ami.DISTROS["dlami"].ssm_path.format(arch="amd64"), image_id)
    image = ami.resolve(aws, "dlami")
    assert image.id == image_id and image.os == "ubuntu-22.04" and image.user == "ubuntu"
    assert "deeplearning" in image.source
