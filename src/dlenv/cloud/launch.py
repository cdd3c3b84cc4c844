"""Launch one instance: spot or on-demand, trying each availability zone that offers the type.

Safe defaults are not options: IMDSv2 required, encrypted gp3 root volume, SSH key + one-CIDR
security group. `InstanceInitiatedShutdownBehavior=stop` keeps the disk when the idle timer
shuts the machine down (one-time spot instances cannot stop, so they terminate).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlenv.cloud.aws_errors import translate
from dlenv.cloud.catalog import InstanceType
from dlenv.errors import AwsError, CapacityError, UsageError

Say = Callable[[str], None]


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
    tags: list[dict[str, str]]


def offered_zones(aws: Any, instance_type: str) -> list[str]:
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


def regions_offering(aws: Any, instance_type: str, candidates: list[str]) -> list[str]:
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


def check_offered(aws: Any, instance_type: str) -> list[str]:
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


def _params(spec: LaunchSpec, subnet: str, spot: bool) -> dict[str, Any]:
    one_time = spot and spec.spot_type == "one-time"
    market = f"spot-{spec.spot_type}" if spot else "on-demand"
    tags = [*spec.tags, {"Key": "dlenv:market", "Value": market}]
    params: dict[str, Any] = {
        "ImageId": spec.image_id,
        "InstanceType": spec.itype.name,
        "MinCount": 1,
        "MaxCount": 1,
        "KeyName": spec.key_name,
        "SubnetId": subnet,
        "SecurityGroupIds": [spec.security_group],
        "ClientToken": f"dlenv-{uuid.uuid4()}",
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


def run(aws: Any, spec: LaunchSpec, zones: list[str], say: Say) -> dict[str, Any]:
    """run_instances in each offered AZ until one has capacity; spot falls back if asked."""
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
                "needed_vcpus": spec.itype.vcpus,
            }
            try:
                response = aws.ec2.run_instances(**_params(spec, spec.subnets[zone], spot))
                return response["Instances"][0]
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
