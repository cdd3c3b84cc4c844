"""boto3 sessions and clients with dlenv's retry policy.

Throttling (RequestLimitExceeded, Throttling) is handled by botocore's own adaptive retry mode,
not by hand-written loops. `AWS_ENDPOINT_URL` (moto's server in tests, a VPC endpoint for users)
is honoured by boto3 itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from dlenv.errors import UsageError

RETRY_CONFIG = {"mode": "adaptive", "max_attempts": 10}


@dataclass
class Aws:
    """One AWS session for one command: region and profile resolved once, clients cached."""

    region: str | None = None
    profile: str | None = None

    @cached_property
    def session(self) -> Any:
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

    def client(self, service: str, region: str | None = None) -> Any:
        key = (service, region or self.region_name)
        cache = self.__dict__.setdefault("_clients", {})
        if key not in cache:
            from botocore.config import Config

            cache[key] = self.session.client(
                service,
                region_name=key[1],
                config=Config(retries=RETRY_CONFIG, user_agent_extra="dlenv"),
            )
        return cache[key]

    @property
    def ec2(self) -> Any:
        return self.client("ec2")


def from_settings(settings: Any) -> Aws:
    return Aws(region=settings.region, profile=settings.profile)
