"""Seeding moto with what real AWS has and moto lacks (Canonical's images and SSM parameters).

moto refuses put_parameter under the reserved /aws prefix, so the public parameters are appended
to moto's in-process backend, which also serves a ThreadedMotoServer started in the test process.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

ACCOUNT = "123456789012"
UBUNTU_2404 = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
UBUNTU_2204 = "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id"

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def put_public_parameter(region: str, name: str, value: str) -> None:
    from moto.ssm.models import Parameter, ssm_backends

    backend = ssm_backends[ACCOUNT][region]
    backend._parameters[name].append(
        Parameter(
            account_id=ACCOUNT,
            name=name,
            value=value,
            parameter_type="String",
            description=None,
            allowed_pattern=None,
            keyid=None,
            last_modified_date=dt.datetime.now(dt.timezone.utc),
            version=1,
            data_type="aws:ec2:image",
        )
    )


def register_ubuntu(ec2, release: str = "24.04", arch: str = "x86_64") -> str:
    code = {"24.04": "noble", "22.04": "jammy"}[release]
    a = "amd64" if arch == "x86_64" else "arm64"
    image = ec2.register_image(
        Name=f"ubuntu/images/hvm-ssd-gp3/ubuntu-{code}-{release}-{a}-server-20251101",
        Architecture=arch,
        RootDeviceName="/dev/sda1",
        VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}],
    )
    return image["ImageId"]


def ubuntu_seeded(region: str = "us-east-1") -> bool:
    """Whether moto's in-process backend (which a ThreadedMotoServer in this process serves) still
    has the Ubuntu parameters: an in-process `mock_aws()` resets every backend when it exits."""
    from moto.ssm.models import ssm_backends

    return bool(ssm_backends[ACCOUNT][region]._parameters.get(UBUNTU_2404))


def seed_ubuntu(region: str = "us-east-1", endpoint_url: str | None = None) -> dict[str, str]:
    """Register Ubuntu 24.04/22.04 images and point Canonical's SSM parameters at them."""
    import boto3

    ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint_url)
    ids = {"24.04": register_ubuntu(ec2, "24.04"), "22.04": register_ubuntu(ec2, "22.04")}
    put_public_parameter(region, UBUNTU_2404, ids["24.04"])
    put_public_parameter(region, UBUNTU_2204, ids["22.04"])
    return ids


def dlenv_resources(
    region: str, name: str, endpoint_url: str | None = None
) -> dict[str, list[str]]:
    """Everything in moto that belongs to environment `name` (for 'nothing left behind')."""
    import boto3

    ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint_url)
    instances = _live_instances(ec2, {"Name": "tag:dlenv:name", "Values": [name]})
    groups = [
        g["GroupId"]
        for g in ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [f"dlenv-{name}"]}]
        )["SecurityGroups"]
    ]
    keys = [
        k["KeyName"]
        for k in ec2.describe_key_pairs()["KeyPairs"]
        if k["KeyName"] == f"dlenv-{name}"
    ]
    volumes = [
        v["VolumeId"]
        for v in ec2.describe_volumes(Filters=[{"Name": "tag:dlenv:name", "Values": [name]}])[
            "Volumes"
        ]
        if v["State"] != "deleted"
    ]
    return {
        "instances": instances,
        "security_groups": groups,
        "key_pairs": keys,
        "volumes": volumes,
    }


def any_dlenv_resources(region: str, endpoint_url: str | None = None) -> dict[str, list[str]]:
    """Every dlenv-created resource of any environment (for 'bad input created nothing')."""
    import boto3

    ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint_url)
    instances = _live_instances(ec2, {"Name": "tag-key", "Values": ["dlenv:name"]})
    groups = [
        g["GroupName"]
        for g in ec2.describe_security_groups()["SecurityGroups"]
        if g["GroupName"].startswith("dlenv-")
    ]
    keys = [
        k["KeyName"]
        for k in ec2.describe_key_pairs()["KeyPairs"]
        if k["KeyName"].startswith("dlenv-")
    ]
    return {"instances": instances, "security_groups": groups, "key_pairs": keys}


def _live_instances(ec2: Any, tag_filter: dict[str, Any]) -> list[str]:
    """Ids of the instances matching `tag_filter` that are not terminated (yet)."""
    live = ["pending", "running", "stopping", "stopped", "shutting-down"]
    return [
        i["InstanceId"]
        for r in ec2.describe_instances(
            Filters=[tag_filter, {"Name": "instance-state-name", "Values": live}]
        )["Reservations"]
        for i in r["Instances"]
    ]


def launch_cluster_nodes(
    endpoint_url: str,
    cluster: str,
    ranks: list[int],
    *,
    nodes: int,
    user: str = "ubuntu",
    instance_type: str = "g5.48xlarge",
) -> list[str]:
    """Instances in moto (us-east-1) tagged as `up NAME --nodes N` tags its nodes, one per rank
    in `ranks` (leave ranks out for a partial cluster); their ids."""
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint_url)
    image = ec2.describe_images(Owners=["self"])["Images"][0]["ImageId"]
    ids = []
    for rank in ranks:
        tags = {
            "dlenv:name": f"{cluster}-{rank}",
            "dlenv:cluster": cluster,
            "dlenv:rank": str(rank),
            "dlenv:nodes": str(nodes),
            "dlenv:user": user,
        }
        inst = ec2.run_instances(
            ImageId=image,
            InstanceType=instance_type,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ],
        )["Instances"][0]
        ids.append(inst["InstanceId"])
    return ids


def console_with_host_keys(keys: list[str]) -> str:
    """Console output as cloud-init prints host keys, carrying `keys` (a host container's)."""
    lines = "\n".join(" ".join(k.split()[:2]) + " root@host" for k in keys)
    return (
        "[  OK  ] Started cloud-final.service\n-----BEGIN SSH HOST KEY KEYS-----\n"
        f"{lines}\n-----END SSH HOST KEY KEYS-----\n"
    )


def start_moto_server():
    """moto's server on a free local port, seeded with Ubuntu images: (server, endpoint URL).

    For code under test that runs in a subprocess (the CLI); the fake credentials go into
    this process's environment, which the subprocesses inherit.
    """
    import os

    from moto.server import ThreadedMotoServer

    os.environ.update(FAKE_ENV)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = "http://{}:{}".format(*server.get_host_and_port())
    seed_ubuntu("us-east-1", endpoint_url=url)
    return server, url
