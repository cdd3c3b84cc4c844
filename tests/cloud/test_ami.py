from __future__ import annotations

import pytest
from botocore.stub import ANY, Stubber

from dlenv.cloud import ami
from dlenv.errors import UsageError


def test_ubuntu_from_canonical_ssm_parameter(aws):
    image = ami.resolve(aws, "ubuntu-24.04")
    assert image.id == aws.ubuntu_ids["24.04"]
    assert image.user == "ubuntu" and image.source.startswith("ssm:/aws/service/canonical/")
    assert ami.resolve(aws, "ubuntu-22.04").id == aws.ubuntu_ids["22.04"]


def test_explicit_ami_id(aws):
    image = ami.resolve(aws, aws.ubuntu_ids["22.04"])
    assert image.user == "ubuntu" and image.os == "ubuntu-22.04" and image.source == "explicit"


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("ami-0000000000000000f", "does not exist"),
        ("ami-xyz", "not a valid AMI id"),
        ("centos-7", "unknown --ami"),
    ],
)
def test_bad_ami_specs(aws, spec, text):
    with pytest.raises(UsageError) as err:
        ami.resolve(aws, spec)
    assert text in err.value.message


def test_arch_mismatch_is_refused(aws):
    # moto omits Architecture from registered images: answer as EC2 does
    with Stubber(aws.ec2) as e:
        e.add_response(
            "describe_images",
            {
                "Images": [
                    {
                        "ImageId": "ami-0aaaaaaaaaaaaaaa1",
                        "Name": "ubuntu-noble",
                        "Architecture": "x86_64",
                    }
                ]
            },
        )
        with pytest.raises(UsageError, match="x86_64 but the instance type is arm64"):
            ami.resolve(aws, "ami-0aaaaaaaaaaaaaaa1", arch="arm64")


def test_falls_back_to_canonical_owner_when_ssm_is_denied(aws):
    ssm, ec2 = aws.client("ssm"), aws.ec2
    with Stubber(ssm) as s, Stubber(ec2) as e:
        s.add_client_error("get_parameter", "AccessDeniedException", "no ssm:GetParameter", 400)
        e.add_response(
            "describe_images",
            {
                "Images": [
                    {
                        "ImageId": "ami-0aaaaaaaaaaaaaaa1",
                        "Name": "ubuntu-noble-24.04-amd64-server-20250101",
                        "CreationDate": "2025-01-01T00:00:00.000Z",
                    },
                    {
                        "ImageId": "ami-0bbbbbbbbbbbbbbb2",
                        "Name": "ubuntu-noble-24.04-amd64-server-20251101",
                        "CreationDate": "2025-11-01T00:00:00.000Z",
                    },
                ]
            },
            {"Owners": [ami.CANONICAL], "Filters": ANY},
        )
        image = ami.resolve(aws, "ubuntu-24.04")
    assert image.id == "ami-0bbbbbbbbbbbbbbb2" and "099720109477" in image.source
