"""Who the credentials are (STS): the account and identity `dlenv doctor` shows."""

from __future__ import annotations

from dataclasses import dataclass

from dlenv.cloud.aws_errors import translated
from dlenv.cloud.session import Aws


@dataclass(frozen=True)
class CallerIdentity:
    account: str
    arn: str


def caller_identity(aws: Aws) -> CallerIdentity:
    """The account and ARN the session's credentials act as (the cheapest call that proves
    they work: STS needs no permission for it)."""
    with translated(region=aws.region_name):
        ident = aws.sts.get_caller_identity()
    return CallerIdentity(account=ident["Account"], arn=ident["Arn"])
