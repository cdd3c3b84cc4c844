"""AWS calls of `dlenv start NAME --move`: snapshot a stopped environment's root volume, register
an image from it, and find or remove what a move made.

Everything a move creates carries the tags `dlenv:name` and `dlenv:move` (the move's id, also the
new instance's `dlenv:launch`), so an interrupted move is found from AWS's answers alone, never
from what a process believes it created. The orchestration (order, rollback, resume) is
`dlenv.ops.move`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dlenv.cloud import shapes
from dlenv.cloud.aws_errors import translated
from dlenv.cloud.session import Aws
from dlenv.errors import AwsError

TAG_MOVE = "dlenv:move"
"""The move's id, on the snapshot, the image and (as `dlenv:launch` too) the new instance."""
TAG_MOVED_FROM = "dlenv:moved-from"
"""On the new instance: the instance id it replaces (how a rerun resumes a move)."""

Arch = Literal["x86_64", "arm64"]


@dataclass(frozen=True)
class RootDisk:
    """The root EBS volume of an instance, and what an image made from it needs."""

    volume_id: str
    device: str
    size_gb: int
    arch: Arch


@dataclass
class MoveArtifacts:
    """What exists in AWS from moves of one environment (found by tag)."""

    snapshots: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    """Live instances a move launched (states other than terminated)."""

    def items(self) -> list[str]:
        return (
            [f"instance {i}" for i in self.instances]
            + [f"image {i}" for i in self.images]
            + [f"snapshot {s}" for s in self.snapshots]
        )


def root_disk(aws: Aws, instance_id: str, arch: Arch) -> RootDisk:
    """The instance's root volume (by its RootDeviceName) and its size."""
    with translated(region=aws.region_name):
        reservations = aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        inst = reservations[0]["Instances"][0]
        device = inst.get("RootDeviceName") or "/dev/sda1"
        mappings = inst.get("BlockDeviceMappings", [])
        volume = next(
            (m["Ebs"]["VolumeId"] for m in mappings if m.get("DeviceName") == device),
            mappings[0]["Ebs"]["VolumeId"] if mappings else None,
        )
        if volume is None:
            raise AwsError(
                f"instance {instance_id} has no EBS root volume to move",
                "only EBS-backed environments (all that dlenv launches) can move",
            )
        size = aws.ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]["Size"]
    found = inst.get("Architecture")
    return RootDisk(volume, device, int(size), found if found in ("x86_64", "arm64") else arch)


def snapshot(aws: Aws, disk: RootDisk, tags: dict[str, str], timeout: int = 3600) -> str:
    """Snapshot the root volume, tagged from the first moment, and wait until it is complete
    (an image can only be registered from a completed snapshot)."""
    with translated(region=aws.region_name):
        snap: str = aws.ec2.create_snapshot(
            VolumeId=disk.volume_id,
            Description=f"dlenv move of {tags.get('dlenv:name', '?')}",
            TagSpecifications=[shapes.tag_spec("snapshot", tags)],
        )["SnapshotId"]
        aws.ec2.get_waiter("snapshot_completed").wait(
            SnapshotIds=[snap], WaiterConfig={"Delay": 15, "MaxAttempts": max(1, timeout // 15)}
        )
    return snap


def register(aws: Aws, name: str, snapshot_id: str, disk: RootDisk, tags: dict[str, str]) -> str:
    """An image whose root is the snapshot: what RunInstances needs to launch from a disk."""
    with translated(region=aws.region_name):
        image: str = aws.ec2.register_image(
            Name=name,
            Description="dlenv move (removed once the moved environment runs)",
            Architecture=disk.arch,
            RootDeviceName=disk.device,
            VirtualizationType="hvm",
            EnaSupport=True,
            BlockDeviceMappings=[
                {
                    "DeviceName": disk.device,
                    "Ebs": {
                        "SnapshotId": snapshot_id,
                        "VolumeSize": disk.size_gb,
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                    },
                }
            ],
            TagSpecifications=[shapes.tag_spec("image", tags)],
        )["ImageId"]
        # tagged again: some implementations of RegisterImage drop TagSpecifications
        aws.ec2.create_tags(Resources=[image], Tags=shapes.tag_list(tags))
        aws.ec2.get_waiter("image_available").wait(
            ImageIds=[image], WaiterConfig={"Delay": 15, "MaxAttempts": 240}
        )
    return image


def artifacts(aws: Aws, name: str, move_id: str | None = None) -> MoveArtifacts:
    """Snapshots, images and live instances from moves of NAME (one move's, with `move_id`)."""
    filters = [
        shapes.filter("tag:dlenv:name", name),
        shapes.filter(f"tag:{TAG_MOVE}", move_id)
        if move_id
        else shapes.filter("tag-key", TAG_MOVE),
    ]
    found = MoveArtifacts()
    with translated(region=aws.region_name):
        for page in aws.ec2.get_paginator("describe_snapshots").paginate(
            OwnerIds=["self"], Filters=filters
        ):
            found.snapshots.extend(s["SnapshotId"] for s in page["Snapshots"])
        found.images.extend(
            i["ImageId"]
            for i in aws.ec2.describe_images(Owners=["self"], Filters=filters)["Images"]
        )
        live = [
            *filters,
            shapes.filter("instance-state-name", "pending", "running", "stopping", "stopped"),
        ]
        for answer in aws.ec2.get_paginator("describe_instances").paginate(Filters=live):
            for reservation in answer["Reservations"]:
                found.instances.extend(i["InstanceId"] for i in reservation["Instances"])
    return found


def terminate(aws: Aws, instance_ids: list[str], spot_requests: list[str]) -> None:
    """Terminate and wait; a persistent spot request is cancelled first (it would relaunch)."""
    if not instance_ids:
        return
    with translated(region=aws.region_name):
        if spot_requests:
            aws.ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=spot_requests)
        aws.ec2.terminate_instances(InstanceIds=instance_ids)
        aws.ec2.get_waiter("instance_terminated").wait(
            InstanceIds=instance_ids, WaiterConfig={"Delay": 5, "MaxAttempts": 180}
        )


def spot_requests_of(aws: Aws, instance_ids: list[str]) -> list[str]:
    if not instance_ids:
        return []
    with translated(region=aws.region_name):
        reservations = aws.ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]
    return [
        i["SpotInstanceRequestId"]
        for r in reservations
        for i in r["Instances"]
        if i.get("SpotInstanceRequestId")
    ]


def remove_image_and_snapshots(aws: Aws, images: list[str], snapshots: list[str]) -> None:
    """Deregister the images first: a snapshot an image uses cannot be deleted."""
    with translated(region=aws.region_name):
        for image in images:
            aws.ec2.deregister_image(ImageId=image)
        for snap in snapshots:
            aws.ec2.delete_snapshot(SnapshotId=snap)


def untag(aws: Aws, instance_id: str) -> None:
    """The last step of a move: the new instance is the environment now, not a move's part."""
    with translated(region=aws.region_name):
        aws.ec2.delete_tags(
            Resources=[instance_id], Tags=[{"Key": TAG_MOVE}, {"Key": TAG_MOVED_FROM}]
        )
