"""Every AWS error code dlenv translates gives a message and a next action."""

from __future__ import annotations

import botocore.exceptions
import pytest

from dlenv.cloud.aws_errors import translate
from dlenv.errors import CapacityError


def _err(code):
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}}, "RunInstances"
    )


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        ("AuthFailure", "aws sts get-caller-identity"),
        ("UnauthorizedOperation", "IAM"),
        ("OptInRequired", "opt-in"),
        ("PendingVerification", "verification"),
        ("MaxSpotInstanceCountExceeded", "L-3819A6DF"),
        ("VcpuLimitExceeded", "request-service-quota-increase"),
        ("InvalidClientTokenId", "aws configure"),
        ("ExpiredToken", "sso login"),
        ("RequestLimitExceeded", "retry"),
        ("VPCIdNotSpecified", "create-default-vpc"),
        ("SomethingNew", "--debug"),
    ],
)
def test_translation_has_a_hint(code, needle):
    ctx = {
        "quota_code": "L-DB2E81BA",
        "quota_name": "Running On-Demand G and VT instances",
        "spot_quota_code": "L-3819A6DF",
        "spot_quota_name": "All G and VT Spot Instance Requests",
    }
    err = translate(_err(code), region="us-east-1", context=ctx)
    assert err is not None and err.message and needle in (err.message + " " + err.hint)


def test_capacity_is_its_own_class():
    assert isinstance(translate(_err("InsufficientInstanceCapacity")), CapacityError)


def test_no_credentials():
    err = translate(botocore.exceptions.NoCredentialsError())
    assert "aws configure" in err.hint


THROTTLED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>RequestLimitExceeded'
    b"</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r1</RequestID></Response>"
)
EMPTY = (
    b'<?xml version="1.0" encoding="UTF-8"?><DescribeInstancesResponse '
    b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r2</requestId>'
    b"<reservationSet/></DescribeInstancesResponse>"
)


def _answered_ec2(monkeypatch, answers: list[tuple[int, bytes]]):
    """A real botocore EC2 client (dlenv's retry policy) whose requests get `answers` in turn
    (the last one repeats) instead of reaching AWS; returns (client, urls sent)."""
    import botocore.awsrequest

    from dlenv.cloud.session import Aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setattr("time.sleep", lambda s: None)
    ec2 = Aws(region="us-east-1").ec2
    sent: list[str] = []

    def answer(request, **kwargs):
        sent.append(request.url)
        status, body = answers[min(len(sent), len(answers)) - 1]
        raw = type("Raw", (), {"stream": lambda self, **kw: iter([body])})()
        return botocore.awsrequest.AWSResponse(request.url, status, {}, raw)

    ec2.meta.events.register("before-send.ec2", answer)
    return ec2, sent


def test_throttling_is_retried_by_botocore_adaptive_mode(monkeypatch):
    """RequestLimitExceeded twice, then success: the call succeeds through botocore's retries."""
    from dlenv.cloud.session import RETRY_MODE

    assert RETRY_MODE == "adaptive"
    ec2, sent = _answered_ec2(monkeypatch, [(503, THROTTLED), (503, THROTTLED), (200, EMPTY)])
    assert ec2.describe_instances()["Reservations"] == []
    assert len(sent) == 3


NO_CAPACITY = (
    b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>'
    b"InsufficientInstanceCapacity</Code><Message>We currently do not have sufficient g5.xlarge "
    b"capacity in the Availability Zone you requested (us-east-1a).</Message></Error></Errors>"
    b"<RequestID>r3</RequestID></Response>"
)


@pytest.mark.parametrize("call", ["run_instances", "start_instances"])
def test_a_capacity_answer_is_final_but_throttling_before_it_is_retried(monkeypatch, call):
    """EC2 says "no capacity" with HTTP 500, which botocore retries like any server error; dlenv
    tries the next zone itself, so the launching and starting calls take that answer at once.
    Throttling on the same call is still retried: two throttles, then the capacity answer."""
    import botocore.exceptions

    ec2, sent = _answered_ec2(monkeypatch, [(503, THROTTLED), (503, THROTTLED), (500, NO_CAPACITY)])
    args = (
        {"ImageId": "ami-12345678", "MinCount": 1, "MaxCount": 1}
        if call == "run_instances"
        else {"InstanceIds": ["i-0123456789abcdef0"]}
    )
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        getattr(ec2, call)(**args)
    assert raised.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert isinstance(translate(raised.value), CapacityError)
    assert len(sent) == 3, sent  # 2 throttled + 1 capacity answer, not 10 attempts
