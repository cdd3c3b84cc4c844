"""Translate AWS errors into what the user should do next.

Codes are AWS's real ones (as returned by EC2/STS). Each translation names the problem in one
line and gives the next action: which quota and its code, which console page, which command.
"""

from __future__ import annotations

from typing import Any, Literal

from dlenv.cloud.session import CAPACITY_CODES
from dlenv.errors import AwsError, CapacityError, DlenvError

QUOTA_CONSOLE = "https://console.aws.amazon.com/servicequotas/home/services/ec2/quotas"


def quota_hint(
    quota_code: str | None,
    quota_name: str | None,
    region: str | None,
    needed_vcpus: int | None = None,
) -> str:
    if not quota_code:
        return f"request a vCPU quota increase in Service Quotas: {QUOTA_CONSOLE}"
    value = f" --desired-value {needed_vcpus}" if needed_vcpus else " --desired-value N"
    region_flag = f" --region {region}" if region else ""
    return (
        f"quota {quota_code} ({quota_name}) is too low: run `aws service-quotas "
        f"request-service-quota-increase --service-code ec2 --quota-code {quota_code}"
        f"{value}{region_flag}` or use {QUOTA_CONSOLE}/{quota_code}"
    )


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def translate(
    exc: BaseException, *, region: str | None = None, context: dict[str, Any] | None = None
) -> DlenvError | None:
    """Map a botocore exception to a DlenvError; None when it is not an AWS error we know."""
    import botocore.exceptions as bex

    context = context or {}
    if isinstance(exc, DlenvError):
        return exc
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return AwsError(
            "no AWS credentials found",
            "run `aws configure` (or `aws sso login`), or set AWS_PROFILE / "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            code="NoCredentials",
        )
    if isinstance(exc, bex.NoRegionError):
        return AwsError("no AWS region configured", "pass --region or set AWS_REGION")
    if isinstance(exc, bex.EndpointConnectionError):
        return AwsError(
            f"cannot reach the AWS endpoint ({exc.kwargs.get('endpoint_url', '?')})",
            "check your network, the region name, and AWS_ENDPOINT_URL if you set it",
        )
    if isinstance(exc, bex.TokenRetrievalError | bex.SSOTokenLoadError):
        return AwsError("your AWS SSO session has expired", "run `aws sso login`")
    if not isinstance(exc, bex.ClientError):
        return None

    code = error_code(exc) or "Unknown"
    message = exc.response.get("Error", {}).get("Message", str(exc))
    itype = context.get("instance_type", "this instance type")
    where = region or context.get("region")
    table: dict[str, tuple[str, str]] = {
        "AuthFailure": (
            "AWS rejected your credentials",
            "check the access key / profile (`aws sts get-caller-identity`), or refresh an expired session",
        ),
        "UnauthorizedOperation": (
            "your AWS identity is not allowed to do this",
            "grant EC2 permissions (run_instances, describe_*, create_security_group, import_key_pair) to your IAM user/role",
        ),
        "AccessDenied": ("access denied by AWS", "check the IAM permissions of your profile"),
        "AccessDeniedException": (
            "access denied by AWS",
            "check the IAM permissions of your profile",
        ),
        "OptInRequired": (
            f"your account is not subscribed to EC2 in {where} (or the AMI needs a Marketplace subscription)",
            "complete the account/region opt-in in the AWS console, or pick an enabled region with --region",
        ),
        "PendingVerification": (
            "your AWS account is still being verified for this region",
            "wait for AWS's verification email (usually minutes, up to 4 hours) and retry",
        ),
        "InvalidClientTokenId": (
            "the AWS access key is not valid",
            "check AWS_ACCESS_KEY_ID / your profile, or run `aws configure`",
        ),
        "UnrecognizedClientException": (
            "the AWS access key is not valid",
            "check your credentials or run `aws configure`",
        ),
        "ExpiredToken": (
            "your AWS session token has expired",
            "refresh it (e.g. `aws sso login`) and retry",
        ),
        "RequestExpired": (
            "the request expired: your clock may be wrong",
            "sync your system clock (NTP) and retry",
        ),
        "MaxSpotInstanceCountExceeded": (
            "you reached the maximum number of spot requests",
            quota_hint(context.get("spot_quota_code"), context.get("spot_quota_name"), where),
        ),
        "SpotMaxPriceTooLow": (
            "your spot max price is below the current spot price",
            "raise the max price or launch on-demand",
        ),
        "InvalidAMIID.NotFound": (
            "the AMI does not exist in this region",
            "check --ami, or use ubuntu-24.04",
        ),
        "InvalidAMIID.Malformed": (
            "the AMI id is malformed",
            "use an id like ami-0123456789abcdef0",
        ),
        "Unsupported": (
            f"{itype} is not supported in this availability zone or with these options",
            "try another region (--region) or instance type",
        ),
        "InsufficientFreeAddressesInSubnet": (
            "the subnet has no free IP addresses",
            "use another availability zone or subnet",
        ),
        "VPCIdNotSpecified": (
            "this region has no default VPC",
            "create one with `aws ec2 create-default-vpc`",
        ),
        "ResourceLimitExceeded": (
            f"an EC2 resource limit was reached in {where} (ResourceLimitExceeded): {message}",
            "remove unused images and snapshots (`dlenv ami list`, `dlenv ami rm AMI_ID`) or "
            "request a higher limit in the Service Quotas console",
        ),
        "InvalidAMIName.Duplicate": (
            f"an image with this name already exists in {where}",
            "wait a second and bake again (names carry the time), or `dlenv ami rm` the old one",
        ),
        "InvalidKeyPair.NotFound": (
            "the EC2 key pair is missing",
            "run `dlenv down NAME --keep-key` then `dlenv up NAME` again",
        ),
    }
    if code == "VcpuLimitExceeded":
        return AwsError(
            f"not enough vCPU quota to launch {itype} in {where}",
            quota_hint(
                context.get("quota_code"),
                context.get("quota_name"),
                where,
                context.get("needed_vcpus"),
            ),
            code=code,
        )
    if code in CAPACITY_CODES:
        return CapacityError(
            f"AWS has no capacity for {itype} in {context.get('az', where)} right now",
            "try again later, another region (--region), --spot, or another instance type",
            code=code,
        )
    if code in {"RequestLimitExceeded", "Throttling", "ThrottlingException"}:
        return AwsError(
            "AWS is throttling requests even after retries", "wait a minute and retry", code=code
        )
    if code in table:
        text, hint = table[code]
        return AwsError(text, hint, code=code)
    return AwsError(
        f"AWS error {code}: {message}", "re-run with --debug for the full request", code=code
    )


class translated:
    """Context manager: `with translated(region=..., instance_type=...):` raises DlenvErrors."""

    def __init__(self, region: str | None = None, **context: Any) -> None:
        self.region = region
        self.context = context

    def __enter__(self) -> translated:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, DlenvError) or not isinstance(exc, Exception):
            return False
        mapped = translate(exc, region=self.region, context=self.context)
        if mapped is None:
            return False
        raise mapped from exc
