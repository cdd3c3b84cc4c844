"""Find environments by tag and drive their lifecycle (stop, start, terminate).

`list_environments` makes one paginated describe_instances call for all environments, so
`dlenv status` costs O(pages), not O(instances).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dlenv.cloud import shapes
from dlenv.cloud.aws_errors import translated
from dlenv.cloud.session import Aws
from dlenv.errors import NotFoundError

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import InstanceTypeDef

TAG_NAME = "dlenv:name"
TAG_STACK = "dlenv:stack"
TAG_USER = "dlenv:user"
TAG_OS = "dlenv:os"
InstanceState = Literal["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]
"""EC2's instance states (describe_instances `State.Name`)."""
LIVE_STATES: list[InstanceState] = ["pending", "running", "stopping", "stopped", "shutting-down"]


@dataclass
class Environment:
    name: str
    instance_id: str
    instance_type: str
    state: InstanceState
    public_ip: str | None
    private_ip: str | None
    launch_time: dt.datetime | None
    az: str | None
    spot: bool
    market: str
    """on-demand, spot-persistent or spot-one-time (from the dlenv:market tag)."""
    spot_request_id: str | None
    stack: str | None
    user: str
    os: str | None
    key_name: str | None
    security_groups: list[str] = field(default_factory=list)
    state_reason: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    image_id: str | None = None

    @classmethod
    def from_instance(cls, inst: InstanceTypeDef) -> Environment:
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        reason = inst.get("StateReason", {}).get("Message")
        return cls(
            name=tags.get(TAG_NAME, "?"),
            instance_id=inst["InstanceId"],
            instance_type=inst["InstanceType"],
            state=inst["State"]["Name"],
            public_ip=inst.get("PublicIpAddress"),
            private_ip=inst.get("PrivateIpAddress"),
            launch_time=inst.get("LaunchTime"),
            az=inst.get("Placement", {}).get("AvailabilityZone"),
            spot=inst.get("InstanceLifecycle") == "spot",
            market=tags.get(
                "dlenv:market", "spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand"
            ),
            spot_request_id=inst.get("SpotInstanceRequestId"),
            stack=tags.get(TAG_STACK),
            user=tags.get(TAG_USER, "ubuntu"),
            os=tags.get(TAG_OS),
            key_name=inst.get("KeyName"),
            security_groups=[g["GroupId"] for g in inst.get("SecurityGroups", [])],
            state_reason=reason,
            tags=tags,
            image_id=inst.get("ImageId"),
        )

    def hours_running(self, now: dt.datetime | None = None) -> float:
        """Hours since the last launch/start while running (what EC2 bills for compute)."""
        if self.state != "running" or self.launch_time is None:
            return 0.0
        now = now or dt.datetime.now(dt.timezone.utc)
        launched = self.launch_time
        if launched.tzinfo is None:
            launched = launched.replace(tzinfo=dt.timezone.utc)
        return max(0.0, (now - launched).total_seconds() / 3600)

    @property
    def interrupted(self) -> bool:
        """A spot interruption: AWS stopped/terminated it, not the user."""
        return bool(self.state_reason and "Server.SpotInstance" in self.state_reason)


def list_environments(aws: Aws, name: str | None = None) -> list[Environment]:
    filters = [
        shapes.filter("instance-state-name", *LIVE_STATES),
        shapes.filter(f"tag:{TAG_NAME}", name) if name else shapes.filter("tag-key", TAG_NAME),
    ]
    envs: list[Environment] = []
    with translated(region=aws.region_name):
        for page in aws.ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                envs.extend(Environment.from_instance(i) for i in reservation["Instances"])
    return sorted(envs, key=lambda e: (e.name, e.instance_id))


def find(aws: Aws, name: str) -> Environment | None:
    envs = list_environments(aws, name)
    return envs[0] if envs else None


def get(aws: Aws, name: str) -> Environment:
    env = find(aws, name)
    if env is None:
        raise NotFoundError(
            f"no environment named {name!r} in {aws.region_name}",
            "`dlenv status` lists your environments (check --region)",
        )
    return env


InstanceWaiter = Literal["instance_running", "instance_stopped", "instance_terminated"]
"""The EC2 waiters dlenv waits on an instance with."""


def wait(aws: Aws, waiter: InstanceWaiter, instance_id: str, timeout: int = 900) -> None:
    delay = 5
    with translated(region=aws.region_name):
        aws.ec2.get_waiter(waiter).wait(
            InstanceIds=[instance_id],
            WaiterConfig={"Delay": delay, "MaxAttempts": max(1, timeout // delay)},
        )


def tag(aws: Aws, resource_ids: Sequence[str], tags: Mapping[str, str]) -> None:
    """Set TAGS (added, or overwritten by key) on the resources (instances, images, ...)."""
    with translated(region=aws.region_name):
        aws.ec2.create_tags(Resources=list(resource_ids), Tags=shapes.tag_list(tags))


def untag(aws: Aws, resource_ids: Sequence[str], keys: Iterable[str]) -> None:
    """Remove the tags KEYS from the resources, whatever their values."""
    with translated(region=aws.region_name):
        aws.ec2.delete_tags(Resources=list(resource_ids), Tags=shapes.tag_keys(keys))


def terminate(
    aws: Aws,
    envs: Sequence[Environment],
    *,
    requested: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """Terminate the instances of ENVS (not waiting), their spot requests cancelled first: a
    persistent request would launch them again. `requested(ids)` runs between the two, when
    the termination is about to be asked (callers record it for their "remains:" line).
    Returns the instance ids."""
    ids = [e.instance_id for e in envs]
    with translated(region=aws.region_name):
        spot = [e.spot_request_id for e in envs if e.spot_request_id]
        if spot:
            aws.ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=spot)
        if requested is not None:
            requested(ids)
        aws.ec2.terminate_instances(InstanceIds=ids)
    return ids


def stop(aws: Aws, instance_id: str) -> None:
    """Ask EC2 to stop the instance (not waiting: `wait(aws, "instance_stopped", ...)`)."""
    with translated(region=aws.region_name):
        aws.ec2.stop_instances(InstanceIds=[instance_id])


def start(aws: Aws, env: Environment) -> None:
    """Ask EC2 to start ENV's instance; no capacity for its type in its zone: CapacityError."""
    with translated(region=aws.region_name, instance_type=env.instance_type, az=env.az or ""):
        aws.ec2.start_instances(InstanceIds=[env.instance_id])


def set_type(aws: Aws, instance_id: str, instance_type: str) -> None:
    """Change a stopped instance's type (same disk, same everything else)."""
    with translated(region=aws.region_name, instance_type=instance_type):
        aws.ec2.modify_instance_attribute(
            InstanceId=instance_id, InstanceType={"Value": instance_type}
        )


def ssh_target_for(name: str, settings: Any) -> Any:
    """The SshTarget of a running environment (used by provision, jupyter, smoke-test, ssh)."""
    from dlenv.cloud.keys import require_private_key
    from dlenv.cloud.session import from_settings
    from dlenv.errors import DlenvError

    aws = from_settings(settings)
    env = get(aws, name)
    if env.state != "running":
        raise DlenvError(
            f"environment {name!r} is {env.state}", f"start it with `dlenv start {name}`"
        )
    return target_of(env, settings, require_private_key(name, aws.region_name))


def target_of(env: Environment, settings: Any, key_file: Any) -> Any:
    """The SshTarget of an environment already described (no AWS call): address, login user
    (the tag, or --ssh-user), its key and the proxy command the settings name."""
    from dlenv.ssh.target import environment_target

    return environment_target(
        env.name,
        host=env.public_ip or env.private_ip,
        tag_user=env.user,
        ssh_user=settings.ssh_user,
        key_file=key_file,
        proxy_command=settings.ssh_proxy_command,
    )


VOLUME_PRICE_GB_MONTH = 0.08
"""EBS gp3 storage, us-east-1 list price ($/GB-month): what a stopped environment still costs
(the baseline IOPS and throughput dlenv launches with are included in gp3's price)."""


def volume_sizes(aws: Aws, instance_ids: list[str]) -> dict[str, int]:
    """{instance id: GB of EBS volumes attached}, in one paginated DescribeVolumes call."""
    sizes: dict[str, int] = {}
    if not instance_ids:
        return sizes
    with translated(region=aws.region_name):
        pages = aws.ec2.get_paginator("describe_volumes").paginate(
            Filters=[{"Name": "attachment.instance-id", "Values": list(instance_ids)}]
        )
        for page in pages:
            for volume in page.get("Volumes", []):
                for attachment in volume.get("Attachments", []):
                    iid = attachment.get("InstanceId")
                    if iid in instance_ids:
                        sizes[iid] = sizes.get(iid, 0) + int(volume.get("Size", 0))
    return sizes
