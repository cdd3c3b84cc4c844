"""boto3 sessions and clients with dlenv's retry policy.

Throttling (RequestLimitExceeded, Throttling) is handled by botocore's own adaptive retry mode,
not by hand-written loops. `AWS_ENDPOINT_URL` (moto's server in tests, a VPC endpoint for users)
is honoured by boto3 itself.

One exception to botocore's policy: EC2 answers "no capacity" with HTTP 500, which botocore retries
like any server error (up to 10 attempts with back-off: about a minute and a half per zone). dlenv
moves on to the next zone, market or node count itself, so a capacity answer is final for the
launching and starting calls (Terraform's AWS provider made the same choice, its PR #21293).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final, Literal, overload

from dlenv.errors import UsageError

if TYPE_CHECKING:  # boto3-stubs (a dev dependency): types only, never imported at run time
    from boto3.session import Session
    from botocore.awsrequest import AWSResponse
    from botocore.model import OperationModel
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_pricing import PricingClient
    from mypy_boto3_service_quotas import ServiceQuotasClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient

Service = Literal["ec2", "pricing", "service-quotas", "ssm", "sts"]
"""The AWS services dlenv talks to (each has its typed client below)."""

RETRY_MODE: Final = "adaptive"
MAX_ATTEMPTS: Final = 10

CAPACITY_CODES = frozenset(
    {"InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity"}
)
"""EC2's "no capacity" error codes (aws_errors maps them to CapacityError)."""

CAPACITY_CALLS = ("RunInstances", "StartInstances")
"""The EC2 calls whose capacity answer is final: dlenv itself decides where to try next."""


def capacity_is_final(response: Any = None, **_: Any) -> bool | None:
    """botocore `needs-retry` handler: False (do not retry) for a capacity answer, else None.

    Registered on the operation's own event (`needs-retry.ec2.RunInstances`), which botocore
    emits to more specific handlers first; the first answer that is not None decides, and False
    means "no retry". Throttling and other server errors still get botocore's retries."""
    if response is None:
        return None
    code = response[1].get("Error", {}).get("Code")
    return False if code in CAPACITY_CODES else None


@dataclass
class Aws:
    """One AWS session for one command: region and profile resolved once, clients cached."""

    region: str | None = None
    profile: str | None = None

    @cached_property
    def session(self) -> Session:
        import boto3
        import botocore.exceptions

        try:
            session = boto3.Session(profile_name=self.profile, region_name=self.region)
        except botocore.exceptions.ProfileNotFound:
            raise UsageError(
                f"AWS profile {self.profile!r} is not configured",
                "run `aws configure --profile NAME` or pick one from ~/.aws/config",
            ) from None
        if not session.region_name:
            raise UsageError(
                "no AWS region configured",
                "pass --region us-east-1 (or set AWS_REGION, or region in dlenv.toml)",
            )
        return session

    @property
    def region_name(self) -> str:
        region: str = self.session.region_name  # checked non-empty when the session was made
        return region

    @overload
    def client(self, service: Literal["ec2"], region: str | None = None) -> EC2Client: ...
    @overload
    def client(self, service: Literal["pricing"], region: str | None = None) -> PricingClient: ...
    @overload
    def client(
        self, service: Literal["service-quotas"], region: str | None = None
    ) -> ServiceQuotasClient: ...
    @overload
    def client(self, service: Literal["ssm"], region: str | None = None) -> SSMClient: ...
    @overload
    def client(self, service: Literal["sts"], region: str | None = None) -> STSClient: ...
    def client(self, service: Service, region: str | None = None) -> Any:
        """The client of SERVICE in REGION (default: the session's), made once and cached.

        Typed per service by the overloads above (boto3-stubs); the implementation returns
        Any because boto3's own `Session.client` is one overload per service as well."""
        key = (service, region or self.region_name)
        cache: dict[tuple[str, str], Any] = self.__dict__.setdefault("_clients", {})
        if key not in cache:
            from botocore.config import Config

            client = self.session.client(
                service,
                region_name=key[1],
                config=Config(
                    retries={"mode": RETRY_MODE, "max_attempts": MAX_ATTEMPTS},
                    user_agent_extra="dlenv",
                ),
            )
            if service == "ec2":
                for call in CAPACITY_CALLS:
                    # botocore-stubs type handlers as returning None, but needs-retry handlers
                    # answer (False: no retry): the stub is narrower than botocore's contract
                    client.meta.events.register(
                        f"needs-retry.ec2.{call}",
                        capacity_is_final,  # type: ignore[arg-type]
                    )
            cache[key] = client
        return cache[key]

    @property
    def ec2(self) -> EC2Client:
        return self.client("ec2")

    @property
    def sts(self) -> STSClient:
        return self.client("sts")

    @property
    def service_quotas(self) -> ServiceQuotasClient:
        return self.client("service-quotas")

    @property
    def ssm(self) -> SSMClient:
        return self.client("ssm")


def watch_calls(
    aws: Aws,
    before: Callable[[str], None],
    after: Callable[[str, bool, Mapping[str, Any]], None],
    *,
    key: str,
) -> Callable[[], None]:
    """Follow every EC2 call of the session (botocore's before-call/after-call events):
    `before(operation)` as it is sent, `after(operation, ok, parsed)` when its answer arrived
    (ok: HTTP status below 300; parsed: the answer). KEY names the registration, so that
    registering twice replaces it. Returns the function that stops watching."""
    events = aws.ec2.meta.events

    def on_before(model: OperationModel, **_: Any) -> None:
        before(model.name)

    def on_after(
        model: OperationModel, http_response: AWSResponse, parsed: Mapping[str, Any], **_: Any
    ) -> None:
        after(model.name, getattr(http_response, "status_code", 500) < 300, parsed)

    events.register("before-call.ec2", on_before, unique_id=key + "-before")
    events.register("after-call.ec2", on_after, unique_id=key + "-after")

    def unregister() -> None:
        events.unregister("before-call.ec2", unique_id=key + "-before")
        events.unregister("after-call.ec2", unique_id=key + "-after")

    return unregister


def from_settings(settings: Any) -> Aws:
    return Aws(region=settings.region, profile=settings.profile)
