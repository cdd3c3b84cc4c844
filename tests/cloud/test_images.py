"""Baked images against moto: which one `up` picks, listing, removal with snapshots."""

from __future__ import annotations

import pytest

from dlenv.cloud import images
from dlenv.errors import AwsError, UsageError


def _baked(aws, *, stack: str, base: str = "ubuntu-24.04", python: str = "uv", when: str) -> str:
    """An image as `dlenv ami bake` leaves it: made from a stopped instance, tagged."""
    inst = aws.ec2.run_instances(
        ImageId=aws.ubuntu_ids["24.04"], MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge"
    )["Instances"][0]["InstanceId"]
    aws.ec2.stop_instances(InstanceIds=[inst])
    tags = {
        "dlenv:stack": stack,
        "dlenv:base": base,
        "dlenv:os": "ubuntu-24.04",
        "dlenv:python": python,
        "dlenv:user": "ubuntu",
        "dlenv:created": when,
    }
    image_id = images.create(aws, inst, f"dlenv-{stack}-{python}-{when}", tags)
    aws.ec2.terminate_instances(InstanceIds=[inst])
    return image_id


def test_find_baked_matches_stack_base_python_and_prefers_the_newest(aws):
    old = _baked(aws, stack="aaaaaaaaaaaa", when="20260101")
    new = _baked(aws, stack="aaaaaaaaaaaa", when="20260102")
    _baked(aws, stack="bbbbbbbbbbbb", when="20260103")  # another stack: never used
    _baked(aws, stack="aaaaaaaaaaaa", python="conda", when="20260104")
    found = images.find_baked(
        aws, stack="aaaaaaaaaaaa", base="ubuntu-24.04", python="uv", arch="x86_64"
    )
    assert found is not None and found.image_id == new and old != new
    assert found.stack == "aaaaaaaaaaaa" and found.python == "uv"
    assert (
        images.find_baked(
            aws, stack="cccccccccccc", base="ubuntu-24.04", python="uv", arch="x86_64"
        )
        is None
    )
    assert (
        images.find_baked(
            aws, stack="aaaaaaaaaaaa", base="ubuntu-22.04", python="uv", arch="x86_64"
        )
        is None
    )
    assert (
        images.find_baked(aws, stack="aaaaaaaaaaaa", base="ubuntu-24.04", python="uv", arch="arm64")
        is None
    )


def test_up_launches_from_the_matching_baked_image_unless_told_not_to(aws, settings, terminal):
    from dlenv.ops import lifecycle

    stack = lifecycle.stack_fingerprint()
    image_id = _baked(aws, stack=stack, python=settings.python, when="20260101")
    picked = lifecycle.choose_image(aws, settings, "x86_64", terminal)
    assert picked.id == image_id and picked.source == "baked"
    settings.baked = False
    assert lifecycle.choose_image(aws, settings, "x86_64", terminal).id == aws.ubuntu_ids["24.04"]
    settings.baked = True
    settings.ami = "ubuntu-22.04"  # no image baked from that base
    assert lifecycle.choose_image(aws, settings, "x86_64", terminal).id == aws.ubuntu_ids["22.04"]


def test_remove_deregisters_and_deletes_the_snapshots(aws):
    image_id = _baked(aws, stack="aaaaaaaaaaaa", when="20260101")
    image = images.get(aws, image_id)
    assert image.snapshot_ids
    images.tag_snapshots(aws, image)
    snap = aws.ec2.describe_snapshots(SnapshotIds=image.snapshot_ids)["Snapshots"][0]
    assert {"Key": "dlenv:stack", "Value": "aaaaaaaaaaaa"} in snap["Tags"]
    assert images.remove(aws, image) == image.snapshot_ids
    assert images.list_baked(aws) == []
    left = aws.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert not set(image.snapshot_ids) & {s["SnapshotId"] for s in left}


def test_an_image_dlenv_did_not_bake_is_left_alone(aws):
    with pytest.raises(UsageError) as err:
        images.get(aws, aws.ubuntu_ids["24.04"])
    assert "was not baked by dlenv" in err.value.message


def test_wait_reports_a_failed_image(aws, monkeypatch):
    image_id = _baked(aws, stack="aaaaaaaaaaaa", when="20260101")
    from moto.ec2.models import ec2_backends

    backend = ec2_backends["123456789012"]["us-east-1"]
    backend.amis[image_id].state = "failed"
    with pytest.raises(AwsError) as err:
        images.wait_available(aws, image_id, lambda _line: None, poll=0)
    assert "could not create image" in err.value.message and "failed" in err.value.message


def test_wait_shows_snapshot_progress_while_pending(aws):
    from moto.ec2.models import ec2_backends

    image_id = _baked(aws, stack="aaaaaaaaaaaa", when="20260101")
    ami = ec2_backends["123456789012"]["us-east-1"].amis[image_id]
    ami.state = "pending"
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        ami.state = "available"  # EC2 finishes between two polls

    image = images.wait_available(aws, image_id, say, poll=0)
    assert image.state == "available"
    assert lines and lines[0].startswith(f"{image_id} pending, snapshot ")
