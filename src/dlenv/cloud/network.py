"""The caller's IP and the per-environment security group (SSH from that IP only).

Nothing but port 22 from one CIDR (the caller's /32 by default) is ever opened: Jupyter is
reached through the SSH tunnel, never through the security group.
"""

from __future__ import annotations

import ipaddress
import urllib.request
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, overload

from dlenv.cloud import shapes
from dlenv.cloud.aws_errors import error_code, translated
from dlenv.cloud.session import Aws
from dlenv.errors import AwsError, UsageError

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import IpPermissionTypeDef, SecurityGroupTypeDef, TagTypeDef


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


def normalize_cidr(text: str, origin: str = "--allow-cidr") -> str:
    """`text` as a canonical network; host bits set are an error, never a silent widening.

    `10.1.2.3/8` used to become 10.0.0.0/8 without a word: sixteen million addresses where the
    user most likely meant one. The error names both readings so the fix is one copy-paste.
    """
    raw = text.strip()
    if not origin.startswith("--"):
        origin = f"allow_cidr (from {origin})"
    try:
        network = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        raise UsageError(
            f"{origin} {text!r} is not a valid CIDR",
            "use an address with prefix length, e.g. 203.0.113.7/32",
        ) from None
    address = ipaddress.ip_address(raw.split("/", 1)[0])
    if address != network.network_address:
        single = f"{address}/{network.max_prefixlen}"
        raise UsageError(
            f"{origin} {text!r} has host bits set: did you mean {network} or {single}?",
            f"use {single} for that one address, {network} for the whole network",
        )
    return str(network)


WIDE_PREFIX = {4: 8, 6: 32}
"""Prefixes shorter than these get a warning: wider than 10.0.0.0/8 (the largest private
network, so no company LAN needs more) or than an ISP's IPv6 allocation (/32) is "a large part
of the internet", never a network the user owns."""


def wide_cidr_warning(cidr: str) -> str | None:
    """The risk of opening SSH to `cidr` in words, or None for a narrow enough network."""
    network = ipaddress.ip_network(cidr)
    if network.prefixlen == 0:
        return (
            f"SSH (port 22) will be open to the whole internet ({cidr}): anyone can try to log in "
            "and every scanner will; prefer your own address (leave allow_cidr unset for your IP /32)"
        )
    if network.prefixlen < WIDE_PREFIX[network.version]:
        return (
            f"SSH (port 22) will be open to {network.num_addresses:,} addresses ({cidr}), a large "
            "part of the internet; prefer your own address or your network's range"
        )
    return None


@overload
def resolve_ssh_cidr(
    allow_cidr: str | None, ip_check_url: str, warn: Callable[[str], None], *, origin: str = ...
) -> str: ...
@overload
def resolve_ssh_cidr(
    allow_cidr: str | None,
    ip_check_url: str | None,
    warn: Callable[[str], None],
    *,
    origin: str = ...,
) -> str | None: ...
def resolve_ssh_cidr(
    allow_cidr: str | None,
    ip_check_url: str | None,
    warn: Callable[[str], None],
    *,
    origin: str = "--allow-cidr",
) -> str | None:
    """THE CIDR that `up` and `allow-ip` open SSH to, and the one place that warns about it.

    An explicit `allow_cidr` (flag, env, trusted config) is validated (`normalize_cidr`); without
    one the caller's detected address is used as a /32 (or None when `ip_check_url` is None:
    the caller detects later, after cheaper checks). A network wider than `WIDE_PREFIX` is
    allowed, since a user may really mean it, but never silently: `warn` names the risk.
    """
    if allow_cidr:
        cidr = normalize_cidr(allow_cidr, origin)
    elif ip_check_url is None:
        return None
    else:
        cidr = caller_cidr(ip_check_url)
    warning = wide_cidr_warning(cidr)
    if warning:
        warn(warning)
    return cidr


def default_vpc(aws: Aws) -> str:
    with translated(region=aws.region_name):
        vpcs = aws.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise AwsError(
            f"region {aws.region_name} has no default VPC",
            "create one with `aws ec2 create-default-vpc` (dlenv launches into the default VPC)",
        )
    vpc_id: str = vpcs[0]["VpcId"]
    return vpc_id


def default_subnets(aws: Aws, vpc_id: str) -> dict[str, str]:
    """AZ name -> its default subnet id."""
    with translated(region=aws.region_name):
        subnets = aws.ec2.describe_subnets(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]},
                {"Name": "default-for-az", "Values": ["true"]},
            ]
        )["Subnets"]
    return {s["AvailabilityZone"]: s["SubnetId"] for s in subnets}


def find_group(aws: Aws, env: str, vpc_id: str | None = None) -> SecurityGroupTypeDef | None:
    filters = [shapes.filter("group-name", group_name(env))]
    if vpc_id:
        filters.append(shapes.filter("vpc-id", vpc_id))
    with translated(region=aws.region_name):
        groups = aws.ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    return groups[0] if groups else None


def ensure_group(
    aws: Aws, env: str, vpc_id: str, cidr: str, tags: Sequence[TagTypeDef]
) -> tuple[str, bool]:
    """(group id, created?) for the environment, with SSH open to `cidr` only.

    A Duplicate from CreateSecurityGroup means another dlenv (another machine) created the group
    between our lookup and our create: ConcurrentLaunchError, and the caller undoes its launch.
    """
    existing = find_group(aws, env, vpc_id)
    with translated(region=aws.region_name):
        if existing:
            gid = existing["GroupId"]
            created = False
        else:
            gid = create_group(
                aws, group_name(env), vpc_id, f"dlenv {env}: SSH from one address only", tags, env
            )
            created = True
        set_ssh_cidr(aws, gid, cidr, existing)
    return gid, created


def create_group(
    aws: Aws,
    name: str,
    vpc_id: str,
    description: str,
    tags: Sequence[TagTypeDef],
    owner: str,
) -> str:
    """Create the tagged security group `name` in `vpc_id` (no rules yet); its id.

    A Duplicate means another dlenv (another machine) created it between our lookup and our
    create: ConcurrentLaunchError of `owner` (the environment or cluster being launched), and
    the caller undoes its launch.
    """
    import botocore.exceptions

    from dlenv.cloud.launch import ConcurrentLaunchError

    with translated(region=aws.region_name):
        try:
            gid: str = aws.ec2.create_security_group(
                GroupName=name,
                VpcId=vpc_id,
                Description=description,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": list(tags)}],
            )["GroupId"]
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "InvalidGroup.Duplicate":
                raise ConcurrentLaunchError(owner, f"security group {name} appeared") from exc
            raise
    return gid


def set_ssh_cidr(aws: Aws, gid: str, cidr: str, group: SecurityGroupTypeDef | None = None) -> None:
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
    rule: IpPermissionTypeDef = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22}
    if ":" in cidr:
        rule["Ipv6Ranges"] = [{"CidrIpv6": cidr, "Description": "dlenv: SSH from caller"}]
    else:
        rule["IpRanges"] = [{"CidrIp": cidr, "Description": "dlenv: SSH from caller"}]
    try:
        aws.ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[rule])
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) != "InvalidPermission.Duplicate":
            raise


def delete_group(aws: Aws, env: str, group_id: str | None = None) -> bool:
    """Delete the environment's group (or exactly `group_id`); False when it was not there."""
    import botocore.exceptions

    if group_id is None:
        group = find_group(aws, env)
        if not group:
            return False
        group_id = group["GroupId"]
    with translated(region=aws.region_name):
        try:
            aws.ec2.delete_security_group(GroupId=group_id)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "InvalidGroup.NotFound":
                raise
    return True
