"""Launch one instance: spot or on-demand, trying each availability zone that offers the type.

Safe defaults are not options: IMDSv2 required, encrypted gp3 root volume, SSH key + one-CIDR
security group. `InstanceInitiatedShutdownBehavior=stop` keeps the disk when the idle timer
shuts the machine down (one-time spot instances cannot stop, so they terminate).

Every launch carries a launch id (tag `dlenv:launch` on the instance, its volume, the key pair
and the security group it creates, and the RunInstances ClientToken). It is how an interrupted
`up` finds what it created even when AWS's answer never arrived, how a retried RunInstances stays
one instance, and how two machines launching one name at once tell their instances apart.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlenv.cloud.aws_errors import translate
from dlenv.cloud.catalog import InstanceType
from dlenv.cloud.session import Aws
from dlenv.errors import AwsError, CapacityError, DlenvError, UsageError

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import InstanceTypeDef, TagTypeDef

Say = Callable[[str], None]

TAG_LAUNCH = "dlenv:launch"


def new_launch_id() -> str:
    """A fresh id for one `up` invocation (32 hex digits: fits ClientToken's 64 characters)."""
    return uuid.uuid4().hex


class ConcurrentLaunchError(DlenvError):
    """Another dlenv created this environment's key pair, group or instance while we were."""

    def __init__(self, env: str, what: str, winner: str | None = None) -> None:
        super().__init__(
            f"another dlenv is launching {env} at the same time ({what})",
            f"`dlenv status {env}` shows the other launch's environment",
        )
        self.env = env
        self.what = what
        self.winner = winner


@dataclass(frozen=True)
class LaunchSpec:
    env: str
    itype: InstanceType
    image_id: str
    root_device: str
    key_name: str
    security_group: str
    subnets: dict[str, str]
    """AZ -> subnet id (the default VPC's default subnets)."""
    disk_gb: int
    spot: bool
    spot_type: str
    spot_fallback: str
    tags: list[TagTypeDef]
    launch_id: str = ""
    """This `up`'s id: tagged on the instance and the base of each attempt's ClientToken."""
    count: int = 1
    """Instances in the one RunInstances call (MinCount = MaxCount: all or none; a cluster)."""
    placement_group: str | None = None
    """A cluster placement group to launch into (`dlenv up --nodes`)."""
    extra_groups: tuple[str, ...] = ()
    """Security groups besides the SSH one (the cluster group)."""
    efa: bool = False
    """Request the primary network interface as an EFA one (cloud.cluster.network_interfaces)."""


def offered_zones(aws: Aws, instance_type: str) -> list[str]:
    """AZs of the session's region that offer the type (describe_instance_type_offerings)."""
    from dlenv.cloud.aws_errors import translated

    zones: list[str] = []
    with translated(region=aws.region_name):
        pages = aws.ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [instance_type]}],
        )
        for page in pages:
            zones.extend(o["Location"] for o in page["InstanceTypeOfferings"])
    return sorted(set(zones))


def regions_offering(aws: Aws, instance_type: str, candidates: list[str]) -> list[str]:
    """Which of `candidates` offer the type (only called on the error path, in parallel)."""
    from concurrent.futures import ThreadPoolExecutor

    def offers(region: str) -> bool:
        try:
            client = aws.client("ec2", region=region)
            found = client.describe_instance_type_offerings(
                LocationType="region",
                Filters=[{"Name": "instance-type", "Values": [instance_type]}],
            )
            return bool(found["InstanceTypeOfferings"])
        except Exception:
            return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(offers, candidates))
    return [r for r, ok in zip(candidates, results, strict=True) if ok]


def check_offered(aws: Aws, instance_type: str) -> list[str]:
    """Zones that offer the type, or a UsageError naming regions that do."""
    zones = offered_zones(aws, instance_type)
    if zones:
        return zones
    from dlenv.cloud.pricing import REGION_NAMES

    others = [
        r
        for r in regions_offering(aws, instance_type, sorted(REGION_NAMES))
        if r != aws.region_name
    ]
    hint = (
        f"regions offering it: {', '.join(others[:8])} (use --region)"
        if others
        else "pick another instance type (`dlenv prices` lists them)"
    )
    raise UsageError(f"{instance_type} is not offered in {aws.region_name}", hint)


def _params(spec: LaunchSpec, subnet: str, spot: bool, attempt: int = 0) -> dict[str, Any]:
    one_time = spot and spec.spot_type == "one-time"
    market = f"spot-{spec.spot_type}" if spot else "on-demand"
    tags = [*spec.tags, {"Key": "dlenv:market", "Value": market}]
    params: dict[str, Any] = {
        "ImageId": spec.image_id,
        "InstanceType": spec.itype.name,
        "MinCount": spec.count,
        "MaxCount": spec.count,
        "KeyName": spec.key_name,
        "SubnetId": subnet,
        "SecurityGroupIds": [spec.security_group],
        # one token per attempt (zone/market), reused by botocore's own retries of that
        # attempt: a RunInstances retried after a lost answer returns the same instance
        "ClientToken": f"dlenv-{spec.launch_id or uuid.uuid4().hex}-{attempt}",
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 2,
        },
        "BlockDeviceMappings": [
            {
                "DeviceName": spec.root_device,
                "Ebs": {
                    "VolumeSize": spec.disk_gb,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "InstanceInitiatedShutdownBehavior": "terminate" if one_time else "stop",
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
    }
    if spec.placement_group:
        params["Placement"] = {"GroupName": spec.placement_group}
    if spec.extra_groups or spec.efa:
        from dlenv.cloud.cluster import network_interfaces

        groups = [spec.security_group, *spec.extra_groups]
        del params["SubnetId"], params["SecurityGroupIds"]  # they go on the interface
        params["NetworkInterfaces"] = network_interfaces(subnet, groups, spec.efa)
    if spot:
        params["TagSpecifications"].append({"ResourceType": "spot-instances-request", "Tags": tags})
        params["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            }
            if one_time
            else {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
        }
    return params


@dataclass(frozen=True)
class Launched:
    """One instance a run_instances call created, as the call's answer gave it.

    Only what a caller needs before it describes the instance again (it is still pending):
    its id, its LaunchTime (the tie-break between concurrent launches) and its index within
    the call (a cluster's node rank).
    """

    instance_id: str
    launch_time: dt.datetime | None
    launch_index: int
    zone: str | None
    spot: bool

    @classmethod
    def from_instance(cls, inst: InstanceTypeDef) -> Launched:
        return cls(
            instance_id=inst["InstanceId"],
            launch_time=inst.get("LaunchTime"),
            launch_index=int(inst.get("AmiLaunchIndex", 0)),
            zone=inst.get("Placement", {}).get("AvailabilityZone"),
            spot=inst.get("InstanceLifecycle") == "spot",
        )


def run(aws: Aws, spec: LaunchSpec, zones: list[str], say: Say) -> Launched:
    """run_instances in each offered AZ until one has capacity; spot falls back if asked."""
    return run_all(aws, spec, zones, say)[0]


def run_all(aws: Aws, spec: LaunchSpec, zones: list[str], say: Say) -> list[Launched]:
    """`run`, returning every instance of the call (spec.count of them: a cluster's nodes),
    ordered by launch index."""
    import botocore.exceptions

    attempts: list[bool] = [spec.spot]
    if spec.spot and spec.spot_fallback == "on-demand":
        attempts.append(False)
    usable = [z for z in zones if z in spec.subnets]
    if not usable:
        raise AwsError(
            f"no default subnet in the zones that offer {spec.itype.name} ({', '.join(zones)})",
            "create default subnets: `aws ec2 create-default-subnet --availability-zone AZ`",
        )
    last: CapacityError | None = None
    attempt = 0
    for spot in attempts:
        market = "spot" if spot else "on-demand"
        for zone in usable:
            context = {
                "instance_type": spec.itype.name,
                "az": zone,
                "quota_code": spec.itype.quota(spot).code,
                "quota_name": spec.itype.quota(spot).name,
                "spot_quota_code": spec.itype.quota(True).code,
                "spot_quota_name": spec.itype.quota(True).name,
                "needed_vcpus": spec.itype.vcpus * spec.count,
            }
            attempt += 1
            try:
                response = aws.ec2.run_instances(**_params(spec, spec.subnets[zone], spot, attempt))
                launched = [Launched.from_instance(i) for i in response["Instances"]]
                return sorted(launched, key=lambda i: i.launch_index)
            except botocore.exceptions.ClientError as exc:
                mapped = translate(exc, region=aws.region_name, context=context)
                if isinstance(mapped, CapacityError):
                    last = mapped
                    say(
                        f"no {market} capacity for {spec.itype.name} in {zone}; trying the next zone"
                    )
                    continue
                raise (mapped or exc) from exc
        if spot and len(attempts) > 1:
            say(
                f"no spot capacity in any zone; falling back to on-demand ({spec.itype.price_per_hour:.3f} $/h)"
            )
    assert last is not None
    raise CapacityError(
        f"no capacity for {spec.itype.name} in any zone of {aws.region_name} ({', '.join(usable)})",
        "retry later, try another region (--region)"
        + ("" if spec.spot else " or --spot")
        + (
            ""
            if not spec.spot or spec.spot_fallback == "on-demand"
            else ", or --spot-fallback on-demand"
        ),
        code=last.code,
    )


# ---- what a launch (or an environment) has in AWS ---------------------------------------------
DEAD_STATES = frozenset({"shutting-down", "terminated"})


@dataclass
class Footprint:
    """What exists in AWS for one environment, or for one launch of it (by its launch tag)."""

    instances: list[Any]
    """instances.Environment rows, live ones only (shutting-down counts: it still exists)."""
    key_pair: str | None
    security_group: str | None
    """The group id."""

    def has(self, kind: str) -> bool:
        return bool(
            {
                "instance": self.instances,
                "key pair": self.key_pair,
                "security group": self.security_group,
            }[kind]
        )

    def items(self) -> list[str]:
        """One label per resource, e.g. `instance i-0abc (running)`, for the "remains" line."""
        out = [f"instance {e.instance_id} ({e.state})" for e in self.instances]
        if self.key_pair:
            out.append(f"key pair {self.key_pair}")
        if self.security_group:
            out.append(f"security group {self.security_group}")
        return out


def footprint(aws: Aws, env: str, launch_id: str | None = None) -> Footprint:
    """Everything of ENV in AWS; with `launch_id`, only what that launch created.

    Found by name and tags, never by what a process believes it created: an interrupted
    request may have been carried out although its answer never arrived.
    """
    from dlenv.cloud import instances, keys, network

    def ours(tags: Sequence[TagTypeDef] | dict[str, str]) -> bool:
        if launch_id is None:
            return True
        pairs = tags if isinstance(tags, dict) else {t["Key"]: t["Value"] for t in tags}
        return pairs.get(TAG_LAUNCH) == launch_id

    live = [e for e in instances.list_environments(aws, env) if ours(e.tags)]
    key_tags = keys.key_pair_tags(aws, env)
    group = network.find_group(aws, env)
    return Footprint(
        instances=live,
        key_pair=keys.key_name(env) if key_tags is not None and ours(key_tags) else None,
        security_group=group["GroupId"] if group and ours(group.get("Tags", [])) else None,
    )


def contest_winner(aws: Aws, env: str, mine: str, my_launch_time: Any) -> str | None:
    """The instance id that keeps ENV's name when several live instances carry it.

    Two machines can pass every check at once and both run RunInstances; afterwards each lists
    the live instances tagged with the name, and the same deterministic rule (earliest
    LaunchTime, then lowest instance id) picks one winner for both. None when `mine` wins.
    """
    import datetime as dt

    from dlenv.cloud import instances

    never = dt.datetime.max.replace(tzinfo=dt.timezone.utc)

    def when(value: Any) -> dt.datetime:
        if not isinstance(value, dt.datetime):
            return never
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)

    rivals = {
        e.instance_id: when(e.launch_time)
        for e in instances.list_environments(aws, env)
        if e.state not in DEAD_STATES
    }
    rivals.setdefault(mine, when(my_launch_time))
    winner = min(rivals, key=lambda i: (rivals[i], i))
    return None if winner == mine else winner
