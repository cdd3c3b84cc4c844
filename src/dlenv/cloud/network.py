"""The caller's IP and the per-environment security group (SSH from that IP only).

Nothing but port 22 from one CIDR (the caller's /32 by default) is ever opened: Jupyter is
reached through the SSH tunnel, never through the security group.
"""

from __future__ import annotations

import ipaddress
import urllib.request
from typing import Any

from dlenv.cloud.aws_errors import error_code, translated
from dlenv.errors import AwsError, UsageError


def group_name(env: str) -> str:
    return f"dlenv-{env}"


def caller_cidr(url: str, timeout: float = 5.0) -> str:
    """The caller's public IPv4 as a /32, or a UsageError asking for --allow-cidr."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read(64).decode().strip()
        address = ipaddress.ip_address(text)
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot detect your public IP address ({exc.__class__.__name__})",
            "pass --allow-cidr with the address SSH will come from, e.g. --allow-cidr 203.0.113.7/32",
        ) from None
    prefix = 32 if address.version == 4 else 128
    return f"{address}/{prefix}"


def normalize_cidr(text: str) -> str:
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise UsageError(
            f"--allow-cidr {text!r} is not a valid CIDR",
            "use an address with prefix length, e.g. 203.0.113.7/32",
        ) from None
    return str(network)


def default_vpc(aws: Any) -> str:
    with translated(region=aws.region_name):
        vpcs = aws.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise AwsError(
            f"region {aws.region_name} has no default VPC",
            "create one with `aws ec2 create-default-vpc` (dlenv launches into the default VPC)",
        )
    return vpcs[0]["VpcId"]


def default_subnets(aws: Any, vpc_id: str) -> dict[str, str]:
    """AZ name -> its default subnet id."""
    with translated(region=aws.region_name):
        subnets = aws.ec2.describe_subnets(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]},
                {"Name": "default-for-az", "Values": ["true"]},
            ]
        )["Subnets"]
    return {s["AvailabilityZone"]: s["SubnetId"] for s in subnets}


def find_group(aws: Any, env: str, vpc_id: str | None = None) -> dict[str, Any] | None:
    filters = [{"Name": "group-name", "Values": [group_name(env)]}]
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    with translated(region=aws.region_name):
        groups = aws.ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    return groups[0] if groups else None


def ensure_group(
    aws: Any, env: str, vpc_id: str, cidr: str, tags: list[dict[str, str]]
) -> tuple[str, bool]:
    """(group id, created?) for the environment, with SSH open to `cidr` only."""
    existing = find_group(aws, env, vpc_id)
    with translated(region=aws.region_name):
        if existing:
            gid = existing["GroupId"]
            created = False
        else:
            gid = aws.ec2.create_security_group(
                GroupName=group_name(env),
                VpcId=vpc_id,
                Description=f"dlenv {env}: SSH from one address only",
                TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
            )["GroupId"]
            created = True
        set_ssh_cidr(aws, gid, cidr, existing)
    return gid, created


def set_ssh_cidr(aws: Any, gid: str, cidr: str, group: dict[str, Any] | None = None) -> None:
    """Make port 22 from `cidr` the group's only ingress rule (revoking stale ones)."""
    import botocore.exceptions

    if group is None:
        group = aws.ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    stale = [
        p
        for p in group.get("IpPermissions", [])
        if not (
            p.get("FromPort") == 22
            and p.get("ToPort") == 22
            and [r["CidrIp"] for r in p.get("IpRanges", [])] == [cidr]
        )
    ]
    if stale:
        aws.ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=stale)
    v6 = ":" in cidr
    ranges = (
        {"Ipv6Ranges": [{"CidrIpv6": cidr, "Description": "dlenv: SSH from caller"}]}
        if v6
        else {"IpRanges": [{"CidrIp": cidr, "Description": "dlenv: SSH from caller"}]}
    )
    try:
        aws.ec2.authorize_security_group_ingress(
            GroupId=gid,
            IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, **ranges}],
        )
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) != "InvalidPermission.Duplicate":
            raise


def delete_group(aws: Any, env: str) -> bool:
    import botocore.exceptions

    group = find_group(aws, env)
    if not group:
        return False
    with translated(region=aws.region_name):
        try:
            aws.ec2.delete_security_group(GroupId=group["GroupId"])
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "InvalidGroup.NotFound":
                raise
    return True
