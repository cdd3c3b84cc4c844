"""The connection to the Docker engine, and what it can run (NVIDIA GPUs or not)."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

from dlenv.errors import DockerError

if TYPE_CHECKING:
    import docker

START_HINT = (
    "start a Docker engine: Docker Desktop, `sudo systemctl start docker`, or on a bare Debian/"
    "Ubuntu box `scripts/ensure-docker` from the dlenv repository (installs and starts one); "
    "DOCKER_HOST selects a remote engine"
)

NVIDIA_HINT = (
    "install the NVIDIA driver and nvidia-container-toolkit, run `sudo nvidia-ctk runtime configure "
    "--runtime=docker` and restart Docker; or run without a GPU: `dlenv local up --cpu` (compose: "
    "add `-f docker/compose.cpu.yaml`)"
)


def connect(timeout: int = 600) -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the default socket), checked with a ping.

    `timeout` is the per-request read timeout: builds stream for minutes, so it is generous.
    """
    import docker
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST") or "the default socket (/var/run/docker.sock)"
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        reason = _short_reason(exc)
        if (
            shutil.which("dockerd") is None
            and shutil.which("docker") is None
            and "DOCKER_HOST" not in os.environ
        ):
            message = "no Docker engine found on this machine"
        else:
            message = f"cannot reach the Docker engine at {where}: {reason}"
        raise DockerError(message, START_HINT) from None
    return client


def _short_reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "No such file or directory", "Permission denied"):
        if marker in text:
            if marker == "Permission denied":
                return "permission denied on the Docker socket (add yourself to the docker group)"
            return marker.lower()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def engine_info(client: docker.DockerClient) -> dict[str, Any]:
    try:
        return client.info()
    except Exception as exc:
        raise DockerError(
            f"the Docker engine did not answer `docker info`: {exc}", START_HINT
        ) from None


def has_nvidia_runtime(info: dict[str, Any]) -> bool:
    """True when this engine can hand NVIDIA GPUs to containers.

    `docker info` lists an `nvidia` runtime once nvidia-container-toolkit is configured
    (`nvidia-ctk runtime configure`); CDI-only setups show `nvidia` devices in `DiscoveredDevices`.
    """
    runtimes = info.get("Runtimes") or {}
    if any("nvidia" in name for name in runtimes):
        return True
    if "nvidia" in str(info.get("DefaultRuntime", "")):
        return True
    devices = info.get("DiscoveredDevices") or []
    return any("nvidia" in str(d.get("ID", "")) for d in devices if isinstance(d, dict))


def is_gpu_unavailable_error(exc: Exception) -> bool:
    """The engine's answer when a GPU is requested but no NVIDIA runtime/driver is there."""
    text = str(exc)
    return (
        'could not select device driver "nvidia"' in text
        or "nvidia-container-cli" in text
        or "unknown or invalid runtime name: nvidia" in text
    )
