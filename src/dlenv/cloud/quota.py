"""vCPU quota preflight: refuse a launch that cannot fit before anything is created.

New AWS accounts have 0 vCPUs for G and P instances, the most common first-launch failure of GPU
launchers. Reading the quota (Service Quotas) and the vCPUs already running in that family turns
a failed run_instances (after a key pair and security group were made) into one clear message
with the exact command that requests the increase. An unreadable quota is only a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from dlenv.cloud import shapes
from dlenv.cloud.aws_errors import quota_hint
from dlenv.cloud.catalog import InstanceType
from dlenv.cloud.session import Aws
from dlenv.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import InstanceTypeDef


def read_quota(aws: Aws, code: str) -> float:
    return float(
        aws.client("service-quotas").get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"][
            "Value"
        ]
    )


def _family_of(instance_type: str) -> str | None:
    prefix = instance_type.split(".")[0]
    if prefix.startswith("p"):
        return "P"
    if prefix.startswith(("g", "vt")):
        return "G"
    return None


def _vcpus(inst: InstanceTypeDef) -> int:
    from dlenv.cloud import catalog

    try:
        return catalog.lookup(inst["InstanceType"]).vcpus
    except Exception:
        cpu = inst.get("CpuOptions") or {}
        return int(cpu.get("CoreCount", 1)) * int(cpu.get("ThreadsPerCore", 1))


def running_vcpus(aws: Aws, family: str, spot: bool) -> int:
    """vCPUs of pending/running instances that count against the family's quota.

    One paginated call over running instances, filtered here by type family (EC2's own
    instance-type filter takes wildcards, but keeping the rule in one place is simpler).
    """
    filters = [shapes.filter("instance-state-name", "pending", "running")]
    total = 0
    for page in aws.ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                if _family_of(inst["InstanceType"]) != family:
                    continue
                if (inst.get("InstanceLifecycle") == "spot") != spot:
                    continue
                total += _vcpus(inst)
    return total


def preflight(aws: Aws, itype: InstanceType, spot: bool, warn: Callable[[str], None]) -> None:
    quota = itype.quota(spot)
    try:
        limit = read_quota(aws, quota.code)
    except Exception as exc:
        warn(
            f"could not read the vCPU quota {quota.code} ({quota.name}): {type(exc).__name__}; "
            "launching anyway"
        )
        return
    try:
        used = running_vcpus(aws, itype.family, spot)
    except Exception as exc:
        warn(f"could not count running vCPUs ({type(exc).__name__}); launching anyway")
        used = 0
    needed = used + itype.vcpus
    if needed > limit:
        region = aws.region_name
        raise AwsError(
            f"{itype.name} needs {itype.vcpus} vCPUs, but quota {quota.code} ({quota.name}) in "
            f"{region} is {limit:g} with {used} in use",
            quota_hint(quota.code, quota.name, region, needed),
            code="QuotaPreflight",
        )
