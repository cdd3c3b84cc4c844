"""Baked AMIs: made by `dlenv ami bake`, found by tag, removed with their snapshots.

An image's identity is its tags, like an environment's: `dlenv:stack` (the stack fingerprint
it was provisioned with), `dlenv:base` (the `--ami` it started from), `dlenv:os`, `dlenv:python`,
`dlenv:user`, plus the versions and the source AMI for people reading the console. `dlenv up`
picks the newest available image of this account whose stack, base, Python manager and
architecture match (`find_baked`); an image of
another stack is never used, because its steps would not match what the checks expect.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dlenv.cloud import shapes
from dlenv.cloud.aws_errors import error_code, translated
from dlenv.cloud.session import Aws
from dlenv.errors import AwsError, NotFoundError, UsageError

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import ImageTypeDef

TAG_BAKED = "dlenv:baked"
SNAPSHOT_PRICE_GB_MONTH = 0.05
"""EBS standard snapshot storage, us-east-1 list price ($/GB-month); an upper bound, since
snapshots are incremental and compressed."""


@dataclass
class BakedImage:
    image_id: str
    name: str
    state: str
    created: str
    arch: str
    stack: str
    os: str
    python: str
    user: str
    source_ami: str
    base: str
    """The `--ami` spec the builder started from (ubuntu-24.04, dlami, ami-...)."""
    size_gb: int
    snapshot_ids: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_image(cls, image: ImageTypeDef) -> BakedImage:
        tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
        snaps = [
            m["Ebs"]["SnapshotId"]
            for m in image.get("BlockDeviceMappings", [])
            if m.get("Ebs", {}).get("SnapshotId")
        ]
        size = sum(
            int(m.get("Ebs", {}).get("VolumeSize", 0)) for m in image.get("BlockDeviceMappings", [])
        )
        return cls(
            image_id=image["ImageId"],
            name=image.get("Name", ""),
            state=image.get("State", "?"),
            created=image.get("CreationDate", ""),
            arch=image.get("Architecture", "x86_64"),
            stack=tags.get("dlenv:stack", "?"),
            os=tags.get("dlenv:os", "?"),
            python=tags.get("dlenv:python", "?"),
            user=tags.get("dlenv:user", "ubuntu"),
            source_ami=tags.get("dlenv:source-ami", "?"),
            base=tags.get("dlenv:base", "?"),
            size_gb=size,
            snapshot_ids=snaps,
            tags=tags,
        )

    @property
    def monthly_cost(self) -> float:
        return self.size_gb * SNAPSHOT_PRICE_GB_MONTH


def list_baked(aws: Aws) -> list[BakedImage]:
    """This account's dlenv images in the session's region, newest first (one API call)."""
    with translated(region=aws.region_name):
        images = aws.ec2.describe_images(
            Owners=["self"], Filters=[shapes.filter(f"tag:{TAG_BAKED}", "true")]
        ).get("Images", [])
    baked = [BakedImage.from_image(i) for i in images]
    # EC2's CreationDate has one-second resolution; the bake's own timestamp breaks ties.
    return sorted(baked, key=lambda b: (b.created, b.tags.get("dlenv:created", "")), reverse=True)


def root_device_name(aws: Aws, image_id: str) -> str | None:
    """The image's root device name (None: EC2 does not say, or no such image)."""
    with translated(region=aws.region_name):
        images = aws.ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    return images[0].get("RootDeviceName") if images else None


def find_baked(aws: Aws, *, stack: str, base: str, python: str, arch: str) -> BakedImage | None:
    """The newest available image baked with this exact stack from this base (`--ami` spec),
    Python manager and architecture."""
    for image in list_baked(aws):
        if (
            image.state == "available"
            and image.stack == stack
            and image.base == base
            and image.python == python
            and image.arch == arch
        ):
            return image
    return None


def image_name(stack: str, os_name: str, python: str, when: dt.datetime) -> str:
    """`dlenv-<stack>-<os>-<python>-<UTC time>`: unique per bake, sorts by date."""
    return f"dlenv-{stack}-{os_name}-{python}-{when.strftime('%Y%m%dT%H%M%SZ')}"


def _baked_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """An image's tags (and its snapshots'): TAGS and the mark `find_baked` looks for."""
    return {**tags, TAG_BAKED: "true"}


def create(aws: Aws, instance_id: str, name: str, tags: dict[str, str]) -> str:
    """create_image from a stopped instance, tagged from the first moment it exists."""
    with translated(region=aws.region_name):
        resp = aws.ec2.create_image(
            InstanceId=instance_id,
            Name=name,
            Description=f"dlenv stack {tags.get('dlenv:stack', '?')} ({tags.get('dlenv:os', '?')})",
            NoReboot=True,  # the builder is already stopped: its disk is consistent
            TagSpecifications=[shapes.tag_spec("image", _baked_tags(tags))],
        )
    image_id: str = resp["ImageId"]
    return image_id


def tag_snapshots(aws: Aws, image: BakedImage) -> None:
    """Give the image's snapshots its tags, so the snapshot console says whose they are.

    Done once the image lists them (a tag specification for snapshots at create time would do
    the same in one call, but moto cannot serve it; the result is identical).
    """
    if not image.snapshot_ids:
        return
    tags = {k: v for k, v in image.tags.items() if k.startswith("dlenv:") or k == "Name"}
    with translated(region=aws.region_name):
        aws.ec2.create_tags(Resources=image.snapshot_ids, Tags=shapes.tag_list(_baked_tags(tags)))


def wait_available(
    aws: Aws,
    image_id: str,
    say: Callable[[str], None],
    *,
    timeout: float = 3600,
    poll: float = 15,
) -> BakedImage:
    """Wait for `available`, reporting the snapshot's progress whenever it changes.

    botocore's image_available waiter would wait as well but reports nothing for the 5-20 minutes
    a 100 GB snapshot takes; this loop makes one DescribeImages (+ DescribeSnapshots) per poll.
    """
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        with translated(region=aws.region_name):
            images = aws.ec2.describe_images(ImageIds=[image_id]).get("Images", [])
        if not images:
            raise NotFoundError(f"image {image_id} disappeared while it was being created")
        image = BakedImage.from_image(images[0])
        if image.state == "available":
            return image
        if image.state in {"failed", "invalid", "error", "deregistered"}:
            reason = images[0].get("StateReason", {}).get("Message", "no reason given")
            raise AwsError(
                f"EC2 could not create image {image_id}: {image.state} ({reason})",
                "run `dlenv ami bake` again; `dlenv ami list` shows what exists",
            )
        progress = _snapshot_progress(aws, image.snapshot_ids)
        line = f"{image_id} {image.state}" + (f", snapshot {progress}" if progress else "")
        if line != last:
            say(line)
            last = line
        if time.monotonic() > deadline:
            raise AwsError(
                f"image {image_id} is still {image.state} after {timeout / 60:.0f} minutes",
                f"it may still finish: `dlenv ami list`; `dlenv ami rm {image_id}` removes it",
            )
        time.sleep(poll)


def _snapshot_progress(aws: Aws, snapshot_ids: list[str]) -> str:
    if not snapshot_ids:
        return ""
    with translated(region=aws.region_name):
        snaps = aws.ec2.describe_snapshots(SnapshotIds=snapshot_ids).get("Snapshots", [])
    return ", ".join(s.get("Progress") or "0%" for s in snaps)


def get(aws: Aws, image_id: str) -> BakedImage:
    import botocore.exceptions

    with translated(region=aws.region_name):
        try:
            images = aws.ec2.describe_images(ImageIds=[image_id]).get("Images", [])
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in {"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"}:
                raise
            images = []
    if not images:
        raise NotFoundError(
            f"no image {image_id} in {aws.region_name}", "`dlenv ami list` shows your baked images"
        )
    image = BakedImage.from_image(images[0])
    if image.tags.get(TAG_BAKED) != "true":
        raise UsageError(
            f"{image_id} ({image.name}) was not baked by dlenv; dlenv leaves it alone",
            "deregister it with the AWS console or `aws ec2 deregister-image` if you mean to",
        )
    return image


def remove(aws: Aws, image: BakedImage) -> list[str]:
    """Deregister the image, then delete its snapshots (which AWS keeps, and bills, otherwise)."""
    import botocore.exceptions

    with translated(region=aws.region_name):
        try:
            aws.ec2.deregister_image(ImageId=image.image_id)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in {"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"}:
                raise
        deleted = []
        for snap in image.snapshot_ids:
            try:
                aws.ec2.delete_snapshot(SnapshotId=snap)
                deleted.append(snap)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) != "InvalidSnapshot.NotFound":
                    raise
    return deleted
