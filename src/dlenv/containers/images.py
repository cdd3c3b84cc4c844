"""Image names, base images and labels, all derived from the stack manifest.

Tags: `dlenv/notebook:<fingerprint>-<variant>` (exactly this stack) and `dlenv/notebook:latest-<variant>`
(what `docker compose` runs by default), with variant `gpu`, `cpu` or `gpu-devel`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dlenv.provision.manifest import Stack

IMAGE_REPO = "dlenv/notebook"

# Public defaults, pinned by digest so a build is reproducible (users pull them; this project's own
# machines reach no registry, so tests pass a locally made base with --base-image).
DEFAULT_BASE_IMAGE = (
    "ubuntu:24.04@sha256:4fbb8e6a8395de5a7550b33509421a2bafbc0aab6c06ba2cef9ebffbc7092d90"
)
# The devel variant: nvcc + cuDNN headers for compiling CUDA extensions. Its CUDA major.minor must
# match the manifest's [cuda] version (a unit test holds them together).
DEVEL_BASE_IMAGE = (
    "nvidia/cuda:13.0.0-cudnn-devel-ubuntu24.04"
    "@sha256:c2621d98e7de80c2aec5eb8403b19c67454c8f5b0c929e8588fd3563c9b6558d"
)

NB_USER = "dlenv"
NB_UID = 1000


def variant(device: str, devel: bool = False) -> str:
    if device not in {"gpu", "cpu"}:
        raise ValueError(f"device must be gpu or cpu, not {device!r}")
    return "gpu-devel" if devel else device


def stack_tag(fingerprint: str, device: str, devel: bool = False) -> str:
    return f"{IMAGE_REPO}:{fingerprint}-{variant(device, devel)}"


def latest_tag(device: str, devel: bool = False) -> str:
    return f"{IMAGE_REPO}:latest-{variant(device, devel)}"


def tags_for(fingerprint: str, device: str, devel: bool = False) -> list[str]:
    return [stack_tag(fingerprint, device, devel), latest_tag(device, devel)]


def default_tag(device: str, devel: bool = False, stack: Stack | None = None) -> str:
    """The image `dlenv local up` runs: the one built from *this* stack (so a pin change rebuilds)."""
    if stack is None:
        from dlenv.provision.manifest import load_stack

        stack = load_stack()
    return stack_tag(stack.fingerprint, device, devel)


def base_image_for(base_image: str | None, devel: bool) -> str:
    if base_image:
        return base_image
    return DEVEL_BASE_IMAGE if devel else DEFAULT_BASE_IMAGE


def labels_for(stack: Stack, device: str, devel: bool, base_image: str) -> dict[str, str]:
    """OCI labels plus the stack's fingerprint and headline versions (io.dlenv.*)."""
    from dlenv import __version__

    versions = stack.versions()
    labels = {
        "org.opencontainers.image.title": "dlenv notebook",
        "org.opencontainers.image.description": "JupyterLab + PyTorch ("
        + ("CUDA" if device == "gpu" else "CPU")
        + "), built by dlenv",
        "org.opencontainers.image.version": f"{stack.fingerprint}-{variant(device, devel)}",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": base_image,
        "io.dlenv.version": __version__,
        "io.dlenv.stack.fingerprint": stack.fingerprint,
        "io.dlenv.variant": variant(device, devel),
    }
    for name, value in sorted(versions.items()):
        labels[f"io.dlenv.stack.{name}"] = str(value)
    torch_variant = (
        stack.get("torch.cuda_variant") if device == "gpu" else stack.get("torch.cpu_variant")
    )
    labels["io.dlenv.stack.torch-variant"] = str(torch_variant)
    return labels
