"""A host image with the whole stack already provisioned, for tests that are not about provisioning.

Provisioning a fresh host (apt, the Python env with torch, JupyterLab, the services) takes most of
a host test's time. A test about the Lab, SSH, sync or idle behaviour only needs a host that *is*
provisioned: it starts a fresh container from this image instead (seconds). The image is made
once: a fresh host provisioned by the real runner, then `docker commit`. Its tag carries the stack
fingerprint and a digest of every rendered step, the host image's revision and the torch wheel,
so any change to what provisioning would do makes a new one; older tags are removed. It is cached
in the engine across runs like the other test images, and built under a file lock so xdist
workers wait for one build instead of racing.

Before the commit, the host's SSH host keys and machine-id are removed: every container started
from the image makes its own (the host image's `test-hostkeys` unit), like a VM launched from an
AMI.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

from harness.hosts import (
    HOST_IMAGE,
    HOST_REV,
    TestHost,
    _image_exists,
    ensure_images,
    start_host,
)
from harness.locks import file_lock

PROVISIONED_REPO = "dlenv-test/provisioned-host"


def provisioning_options(wheelhouse: Path):
    """What the image is provisioned with: uv, this machine's CPU torch wheel, defaults else."""
    from dlenv.provision.options import ProvisionOptions

    return ProvisionOptions(python="uv", wheelhouse=wheelhouse)


def provisioned_tag(wheelhouse: Path) -> str:
    """The image's tag: stack fingerprint + digest of the steps, the host image and the wheels."""
    from dlenv.provision.manifest import load_stack
    from dlenv.provision.steps import build_steps

    stack = load_stack()
    digest = hashlib.sha256(f"host-rev {HOST_REV}\n".encode())
    for step in build_steps(stack, provisioning_options(wheelhouse)):
        digest.update(f"{step.name} {step.digest}\n".encode())
    for wheel in sorted(wheelhouse.glob("torch-*.whl")):
        digest.update(f"wheel {wheel.name} {wheel.stat().st_size}\n".encode())
    return f"{PROVISIONED_REPO}:{stack.fingerprint[:12]}-{digest.hexdigest()[:12]}"


def provisioned_image(wheelhouse: Path, work: Path) -> str:
    """The provisioned host image's tag, built first if this machine does not have it yet."""
    tag = provisioned_tag(wheelhouse)
    with file_lock("provisioned-host-image"):
        if _image_exists(tag):
            return tag
        ensure_images()
        _build(tag, wheelhouse, work)
        _remove_other_tags(tag)
    return tag


def start_provisioned_host(image: str, *, work: Path) -> TestHost:
    """A fresh container of the provisioned `image`, returned once its JupyterLab answers (as a
    host is when provisioning ends), so a test never races the service's start at boot."""
    from dlenv.provision.jupyter import RemoteJupyter

    host = start_host(image, work=work)
    jupyter = RemoteJupyter.from_stack()
    api = f"http://127.0.0.1:{jupyter.port}/api"
    deadline = time.monotonic() + 120
    while host.exec(f"curl -fsS -o /dev/null --max-time 5 {api}").returncode != 0:
        if time.monotonic() > deadline:
            status = host.exec(f"systemctl status --no-pager {jupyter.service}").stdout[-1500:]
            host.stop()
            raise RuntimeError(f"JupyterLab of {image} did not answer in 120 s:\n{status}")
        time.sleep(1)
    return host


def _build(tag: str, wheelhouse: Path, work: Path) -> None:
    from dlenv.provision.runner import provision
    from dlenv.terminal import Terminal

    host = start_host(HOST_IMAGE, work=work, name_prefix="dlenv-test-provisioning")
    try:
        [res] = provision(
            [host.target()], provisioning_options(wheelhouse), Terminal(interactive=False)
        )
        if not res.ok:
            raise RuntimeError(f"provisioning the host for {tag} failed: {res.error}")
        host.exec(
            "rm -f /etc/ssh/ssh_host_* /home/dlenv/.ssh/authorized_keys"
            " && truncate -s 0 /etc/machine-id && sync",
            check=True,
        )
        subprocess.run(
            ["docker", "commit", "--change", 'CMD ["/sbin/init"]', host.container, tag],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        host.stop()


def _remove_other_tags(keep: str) -> None:
    """Older provisioned images (another stack or other steps): each is about 2 GB."""
    listed = subprocess.run(
        ["docker", "image", "ls", PROVISIONED_REPO, "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    stale = [t for t in listed if t != keep]
    if stale:
        subprocess.run(["docker", "image", "rm", *stale], capture_output=True)
