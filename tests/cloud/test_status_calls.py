"""`status` makes O(pages) EC2 calls, not O(instances)."""

from __future__ import annotations

from dlenv.cloud import instances


def test_list_environments_is_one_call_for_many(aws):
    image = aws.ubuntu_ids["24.04"]
    for i in range(12):
        aws.ec2.run_instances(
            ImageId=image,
            InstanceType="g4dn.xlarge",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "dlenv:name", "Value": f"env{i}"}]}
            ],
        )
    aws.ec2.run_instances(
        ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1
    )  # not ours
    calls = []
    aws.ec2.meta.events.register("before-call.ec2.*", lambda model, **kw: calls.append(model.name))
    envs = instances.list_environments(aws)
    assert len(envs) == 12 and calls == ["DescribeInstances"]
    assert {e.name for e in envs} == {f"env{i}" for i in range(12)}


def test_cost_so_far_from_launch_time(aws):
    import datetime as dt

    env = instances.Environment(
        name="x",
        instance_id="i-1",
        instance_type="g4dn.xlarge",
        state="running",
        public_ip=None,
        private_ip=None,
        launch_time=dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.timezone.utc),
        az=None,
        spot=False,
        market="on-demand",
        spot_request_id=None,
        stack=None,
        user="ubuntu",
        os=None,
        key_name=None,
    )
    assert env.hours_running(dt.datetime(2026, 1, 1, 12, 30, tzinfo=dt.timezone.utc)) == 2.5
    env.state = "stopped"
    assert env.hours_running() == 0


def test_spot_interruption_is_reported(aws):
    """A persistent spot instance stopped by AWS: `status` says so (from its state reason)."""
    import datetime as dt

    from botocore.stub import Stubber

    record = {
        "InstanceId": "i-0123456789abcdef0",
        "InstanceType": "g5.xlarge",
        "State": {"Code": 80, "Name": "stopped"},
        "InstanceLifecycle": "spot",
        "SpotInstanceRequestId": "sir-abcd1234",
        "StateReason": {
            "Code": "Server.SpotInstanceShutdown",
            "Message": "Server.SpotInstanceShutdown: The instance was stopped because "
            "the number of Spot requests with a maximum price equal to or "
            "higher than the Spot price exceeded available capacity",
        },
        "LaunchTime": dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc),
        "Placement": {"AvailabilityZone": "us-east-1a"},
        "Tags": [
            {"Key": "dlenv:name", "Value": "spotty"},
            {"Key": "dlenv:market", "Value": "spot-persistent"},
        ],
    }
    with Stubber(aws.ec2) as stub:
        stub.add_response("describe_instances", {"Reservations": [{"Instances": [record]}]})
        [env] = instances.list_environments(aws)
    assert env.interrupted and env.market == "spot-persistent" and env.hours_running() == 0
