"""Resolve `--ami` (ubuntu-24.04, ubuntu-22.04, debian-12 or ami-...) to an image id and login user.

Official images are found through their publishers' public SSM parameters (always the current
release, one cheap call); when SSM is unavailable the newest image of the publisher's AWS account
with the right name pattern is used instead, so a locked-down SSM policy does not block launches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dlenv.cloud.aws_errors import error_code, translated
from dlenv.cloud.session import Aws
from dlenv.errors import UsageError

CANONICAL = "099720109477"
DEBIAN = "136693071363"


@dataclass(frozen=True)
class Distro:
    ssm_path: str
    owner: str
    name_pattern: str
    user: str


DISTROS: dict[str, Distro] = {
    "ubuntu-24.04": Distro(
        "/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id",
        CANONICAL,
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*",
        "ubuntu",
    ),
    "ubuntu-22.04": Distro(
        "/aws/service/canonical/ubuntu/server/22.04/stable/current/{arch}/hvm/ebs-gp2/ami-id",
        CANONICAL,
        "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-{arch}-server-*",
        "ubuntu",
    ),
    # AWS's Deep Learning Base AMI: NVIDIA driver + CUDA preinstalled, so those steps are skipped.
    "dlami": Distro(
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
        "amazon",
        "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04)*",
        "ubuntu",
    ),
    "dlami-24.04": Distro(
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id",
        "amazon",
        "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04)*",
        "ubuntu",
    ),
    "debian-12": Distro(
        "/aws/service/debian/release/12/latest/{arch}", DEBIAN, "debian-12-{arch}-*", "admin"
    ),
}
_AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")


@dataclass(frozen=True)
class Image:
    id: str
    name: str
    user: str
    os: str
    arch: str
    source: str


def _ami_arch(arch: str) -> str:
    return "arm64" if arch == "arm64" else "amd64"


def resolve(aws: Aws, spec: str, arch: str = "x86_64") -> Image:
    """The image for `spec` on `arch` (x86_64 or arm64) in the session's region."""
    spec = spec.strip()
    if spec in DISTROS:
        return _resolve_distro(aws, spec, arch)
    if spec.startswith("ami-"):
        if not _AMI_ID.fullmatch(spec):
            raise UsageError(
                f"--ami {spec!r} is not a valid AMI id",
                "an AMI id looks like ami-0123456789abcdef0",
            )
        return _resolve_id(aws, spec, arch)
    raise UsageError(f"unknown --ami {spec!r}", f"use one of {', '.join(DISTROS)} or an ami-... id")


def _resolve_distro(aws: Aws, spec: str, arch: str) -> Image:
    distro = DISTROS[spec]
    a = _ami_arch(arch)
    path = distro.ssm_path.format(arch=a)
    with translated(region=aws.region_name):
        import botocore.exceptions

        try:
            value = aws.client("ssm").get_parameter(Name=path)["Parameter"]["Value"]
            images = aws.ec2.describe_images(ImageIds=[value]).get("Images", [])
            name = images[0].get("Name", value) if images else value
            return Image(value, name, distro.user, os_of(spec), arch, f"ssm:{path}")
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in {
                "ParameterNotFound",
                "AccessDeniedException",
                "AccessDenied",
                "InvalidAMIID.NotFound",
            }:
                raise
        images = aws.ec2.describe_images(
            Owners=[distro.owner],
            Filters=[
                {"Name": "name", "Values": [distro.name_pattern.format(arch=a)]},
                {"Name": "state", "Values": ["available"]},
                {"Name": "architecture", "Values": [arch]},
            ],
        ).get("Images", [])
    if not images:
        raise UsageError(
            f"no {spec} image for {arch} found in {aws.region_name}",
            "pass an explicit --ami ami-... available in this region",
        )
    newest = max(images, key=lambda i: i.get("CreationDate", ""))
    return Image(
        newest["ImageId"],
        newest.get("Name", ""),
        distro.user,
        os_of(spec),
        arch,
        f"describe_images owner {distro.owner}",
    )


def os_of(spec: str) -> str:
    """The OS a distro spec runs (the DLAMI flavours are Ubuntu)."""
    return {"dlami": "ubuntu-22.04", "dlami-24.04": "ubuntu-24.04"}.get(spec, spec)


def guess_user(name: str, description: str = "") -> str:
    text = f"{name} {description}".lower()
    if "ubuntu" in text:
        return "ubuntu"
    if "debian" in text:
        return "admin"
    return "ec2-user"


def _resolve_id(aws: Aws, image_id: str, arch: str) -> Image:
    with translated(region=aws.region_name):
        import botocore.exceptions

        try:
            images = aws.ec2.describe_images(ImageIds=[image_id]).get("Images", [])
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in {"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"}:
                images = []
            else:
                raise
    if not images:
        raise UsageError(
            f"AMI {image_id} does not exist in {aws.region_name}",
            "AMIs are per region: copy it (`aws ec2 copy-image`) or pick the right --region",
        )
    image = images[0]
    if image.get("Architecture", arch) != arch:
        raise UsageError(
            f"AMI {image_id} is {image.get('Architecture')} but the instance type is {arch}",
            "pick an AMI of the instance type's architecture",
        )
    tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
    name = image.get("Name", image_id)
    user = tags.get("dlenv:user") or guess_user(name, image.get("Description", ""))
    os_name = tags.get(
        "dlenv:os",
        "ubuntu-24.04"
        if "noble" in name
        else "ubuntu-22.04"
        if "jammy" in name
        else "debian-12"
        if "debian-12" in name
        else "unknown",
    )
    return Image(image_id, name, user, os_name, arch, "explicit")
