"""The local notebook container: up, down, status and the smoke test inside it.

`dlenv local up` is the product's first command, so it does the whole job on a fresh machine:
pick GPU or CPU from what the engine can do, build the image when it is absent, choose a free
loopback port, start the container with the same settings as `docker/compose.yaml` (loopback-only
port, token, named work volume, shm size, GPU reservation), wait until Jupyter answers and return
the URL with its token. Running it again is safe: a healthy container on the right image is kept.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlenv.containers import engine
from dlenv.containers.images import IMAGE_REPO
from dlenv.errors import DockerError, UsageError
from dlenv.terminal import Terminal

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

# Overridable so tests (and users with several checkouts) never touch someone else's notebook.
CONTAINER_NAME = os.environ.get("DLENV_LOCAL_CONTAINER", "dlenv-notebook")
WORK_VOLUME = os.environ.get("DLENV_WORK_VOLUME", "dlenv-work")  # as in docker/compose.yaml
# What `pip install` puts in a notebook (the image's PIP_PREFIX/PYTHONUSERBASE, ~/.local): a volume
# of its own, so it survives down/up and a rebuilt image. A custom work volume (tests, a second
# checkout) gets a packages volume named after it, so nothing shares the default one by accident.
PACKAGES_VOLUME = os.environ.get("DLENV_PACKAGES_VOLUME") or (
    "dlenv-packages" if WORK_VOLUME == "dlenv-work" else f"{WORK_VOLUME}-packages"
)
PACKAGES_DIR = "/home/dlenv/.local"
INTERNAL_PORT = 8888
DEFAULT_PORT = 8888
SHM_SIZE = "2g"  # compose.yaml: shm_size: 2gb
DEFAULT_WORKDIR = "/home/dlenv/work"
LOCAL_LABEL = "io.dlenv.local"
PORT_SEARCH = 50


@dataclass
class UpOptions:
    device: str | None = None  # "gpu", "cpu" or None (auto: GPU when the engine has NVIDIA)
    image: str | None = None  # explicit image; else dlenv/notebook:<fingerprint>-<device>
    port: int | None = None  # explicit host port; else 8888 or the next free one
    build: bool | None = None  # None: build when absent; False: never; True: always rebuild
    token: str | None = None  # else $JUPYTER_TOKEN, else generated
    wait: float = 180.0
    workdir: str | None = None  # a host folder as ~/work instead of the work volume


@dataclass
class Notebook:
    container_id: str
    image: str
    device: str
    port: int
    token: str
    status: str
    health: str | None
    workdir: str | None = None
    """The host folder mounted as ~/work (None: the work volume)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/lab?token={self.token}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "container": self.container_id[:12],
            "image": self.image,
            "device": self.device,
            "port": self.port,
            "url": self.url,
            "status": self.status,
            "health": self.health,
            "workdir": self.workdir,
            "work_volume": None if self.workdir else WORK_VOLUME,
        }


BuildFn = Callable[[str, str | None], str]
"""build(device, tag) -> the image reference that was built."""


# -- up ----------------------------------------------------------------------------------------
def up(
    client: docker.DockerClient, terminal: Terminal, opts: UpOptions, build: BuildFn
) -> Notebook:
    folder = host_folder(opts.workdir) if opts.workdir else None  # before any build
    info = engine.engine_info(client)
    device = _choose_device(opts.device, info, terminal)
    image = _ensure_image(client, terminal, opts, device, build)
    image_id = client.images.get(image).id

    existing = find_container(client)
    if existing is not None:
        current = describe(existing)
        same = (
            existing.image is not None
            and existing.image.id == image_id
            and current.workdir == (folder.path if folder else None)
            and current.device == device
            and (opts.port is None or opts.port == current.port)
            and (opts.token is None or opts.token == current.token)
            and existing.status == "running"
        )
        if same:
            terminal.note(f"the notebook is already running ({existing.name}, {image})")
            _wait_ready(existing, current.port, terminal, opts.wait)
            return describe(existing)
        terminal.info(
            f"replacing the notebook container ({current.image}, {current.status}, "
            f"{current.device}) - your work volume {WORK_VOLUME} is kept"
        )
        _remove(existing)

    port = _choose_port(opts.port, terminal)
    token = opts.token or os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    container = _run(client, image, device, port, token, folder=folder)
    _wait_ready(container, port, terminal, opts.wait)
    return describe(container)


def choose_device(requested: str | None, info: dict[str, Any], terminal: Terminal) -> str:
    """gpu/cpu as asked, else gpu when the engine has the NVIDIA runtime (said in one note)."""
    return _choose_device(requested, info, terminal)


def _choose_device(requested: str | None, info: dict[str, Any], terminal: Terminal) -> str:
    if requested in {"gpu", "cpu"}:
        return requested
    if requested is not None:
        raise UsageError(f"unknown device {requested!r}", "use --gpu or --cpu")
    if engine.has_nvidia_runtime(info):
        terminal.note("NVIDIA runtime found in `docker info`: starting the GPU image")
        return "gpu"
    terminal.note(
        "no NVIDIA runtime in `docker info`: starting the CPU image "
        "(--gpu insists on a GPU; see `dlenv local up --help`)"
    )
    return "cpu"


def _ensure_image(
    client: docker.DockerClient, terminal: Terminal, opts: UpOptions, device: str, build: BuildFn
) -> str:
    from docker.errors import ImageNotFound

    if opts.image:
        try:
            client.images.get(opts.image)
        except ImageNotFound:
            if opts.build:
                return build(device, opts.image)
            raise DockerError(
                f"image {opts.image} is not on this machine",
                f"build it: dlenv build {'--cpu ' if device == 'cpu' else ''}"
                f"--tag {opts.image} (or drop --image to let dlenv pick)",
            ) from None
        if opts.build:
            return build(device, opts.image)
        return opts.image

    from dlenv.containers.images import default_tag

    wanted = default_tag(device)
    if opts.build:
        return build(device, None)
    try:
        client.images.get(wanted)
        return wanted
    except ImageNotFound:
        pass
    if opts.build is False:
        raise DockerError(
            f"image {wanted} is not on this machine (and --no-build was given)",
            f"build it: dlenv build{' --cpu' if device == 'cpu' else ''}",
        )
    terminal.info(
        f"image {wanted} is not on this machine yet: building it now "
        "(the first build downloads PyTorch and JupyterLab and takes several minutes)"
    )
    return build(device, None)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _engine_is_local() -> bool:
    host = os.environ.get("DOCKER_HOST", "")
    return host == "" or host.startswith("unix://") or host.startswith("npipe://")


def free_port(start: int) -> int | None:
    for candidate in range(start, start + PORT_SEARCH):
        if candidate <= 65535 and _port_free(candidate):
            return candidate
    return None


def _choose_port(requested: int | None, terminal: Terminal) -> int:
    if requested is not None and not 1 <= requested <= 65535:
        raise UsageError(f"port {requested} is out of range", "use --port between 1024 and 65535")
    port = requested or DEFAULT_PORT
    if not _engine_is_local() or _port_free(port):
        return port
    other = free_port(port + 1)
    if requested is not None:
        suggestion = f"--port {other}" if other else "another --port"
        raise UsageError(
            f"port {port} on 127.0.0.1 is already in use",
            f"stop what uses it, or pick a free one: dlenv local up {suggestion}",
        )
    if other is None:
        raise DockerError(
            f"ports {port}-{port + PORT_SEARCH - 1} on 127.0.0.1 are all in use",
            "free one, or pass --port",
        )
    terminal.note(f"port {port} is in use: using {other} instead")
    return other


def _run(
    client: docker.DockerClient,
    image: str,
    device: str,
    port: int,
    token: str,
    *,
    folder: HostFolder | None = None,
) -> Container:
    from docker.errors import APIError
    from docker.types import DeviceRequest

    workdir = client.images.get(image).attrs.get("Config", {}).get("WorkingDir") or DEFAULT_WORKDIR
    kwargs: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "detach": True,
        "environment": {"JUPYTER_TOKEN": token},
        "ports": {f"{INTERNAL_PORT}/tcp": ("127.0.0.1", port)},
        "volumes": {
            WORK_VOLUME: {"bind": workdir, "mode": "rw"},
            PACKAGES_VOLUME: {"bind": PACKAGES_DIR, "mode": "rw"},
        },
        "shm_size": SHM_SIZE,
        "labels": {LOCAL_LABEL: "1", "io.dlenv.device": device, "io.dlenv.port": str(port)},
        "restart_policy": {"Name": "unless-stopped"},
    }
    if folder is not None:
        _mount_folder(kwargs, client, image, workdir, folder)
    if device == "gpu":
        kwargs["device_requests"] = [
            DeviceRequest(driver="nvidia", count=-1, capabilities=[["gpu"]])
        ]
    container = None
    try:
        container = client.containers.create(image, **kwargs)
        container.start()
    except APIError as exc:
        if container is not None:
            _remove(container)
        text = str(exc)
        if engine.is_gpu_unavailable_error(exc):
            raise DockerError(
                "a GPU was asked for, but this Docker engine cannot give containers "
                "an NVIDIA GPU (no NVIDIA runtime)",
                engine.NVIDIA_HINT,
            ) from None
        if "port is already allocated" in text or "address already in use" in text:
            other = free_port(port + 1)
            raise DockerError(
                f"port {port} on 127.0.0.1 is already in use",
                f"dlenv local up --port {other or port + 1}",
            ) from None
        if "Conflict" in text and CONTAINER_NAME in text:
            raise DockerError(
                f"a container named {CONTAINER_NAME} appeared meanwhile",
                "dlenv local down, then dlenv local up",
            ) from None
        raise DockerError(
            f"the engine refused to start {image}: {exc.explanation or text}",
            f"see `docker logs {CONTAINER_NAME}`; re-run with --debug",
        ) from None
    return container


def _wait_ready(container: Container, port: int, terminal: Terminal, timeout: float) -> None:
    """Wait until Jupyter answers on the host port (or the container dies: show its logs)."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api"
    with terminal.phase("waiting for JupyterLab"):
        while True:
            container.reload()
            if container.status in {"exited", "dead"}:
                logs = container.logs(tail=15).decode(errors="replace").strip()
                code = container.attrs.get("State", {}).get("ExitCode")
                raise DockerError(
                    f"the notebook container stopped (exit {code}); last lines:\n{logs}",
                    "fix the cause above, then dlenv local up again",
                )
            if not _engine_is_local() or _http_ok(url):
                return
            if time.monotonic() > deadline:
                logs = container.logs(tail=15).decode(errors="replace").strip()
                raise DockerError(
                    f"JupyterLab did not answer on {url} within {timeout:.0f}s; "
                    f"last lines:\n{logs}",
                    f"docker logs {CONTAINER_NAME}",
                )
            time.sleep(0.5)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: int = response.status
            return status == 200
    except (urllib.error.URLError, OSError):
        return False


# -- status / down -------------------------------------------------------------------------------
def find_container(client: docker.DockerClient) -> Container | None:
    from docker.errors import NotFound

    try:
        return client.containers.get(CONTAINER_NAME)
    except NotFound:
        return None


def describe(container: Container) -> Notebook:
    container.reload()
    attrs = container.attrs
    env = dict(item.split("=", 1) for item in attrs["Config"].get("Env") or [] if "=" in item)
    labels = attrs["Config"].get("Labels") or {}
    bindings = (attrs.get("HostConfig", {}).get("PortBindings") or {}).get(f"{INTERNAL_PORT}/tcp")
    port = int(bindings[0]["HostPort"]) if bindings else int(labels.get("io.dlenv.port", 0))
    health = (attrs.get("State", {}).get("Health") or {}).get("Status")
    return Notebook(
        container_id=str(container.id),  # set on every container the engine lists
        image=attrs["Config"]["Image"],  # the reference it was started from
        device=labels.get("io.dlenv.device", "cpu"),
        port=port,
        token=env.get("JUPYTER_TOKEN", ""),
        status=container.status,
        health=health,
        workdir=labels.get(WORKDIR_LABEL) or None,
    )


def status(client: docker.DockerClient) -> Notebook | None:
    container = find_container(client)
    return describe(container) if container is not None else None


def _remove(container: Container) -> None:
    from docker.errors import NotFound

    with contextlib.suppress(NotFound):
        container.remove(force=True)


def down(client: docker.DockerClient, *, volumes: bool = False) -> tuple[bool, bool]:
    """Remove the notebook container (and with `volumes` the work and packages volumes):
    (removed, volume_gone: at least one of them was deleted)."""
    from docker.errors import NotFound

    container = find_container(client)
    if container is not None:
        with contextlib.suppress(NotFound):
            container.stop(timeout=10)
        _remove(container)
    volume_gone = False
    if volumes:
        for name in (WORK_VOLUME, PACKAGES_VOLUME):
            try:
                client.volumes.get(name).remove()
                volume_gone = True
            except NotFound:
                pass
        for volume in client.volumes.list(filters={"name": f"{PACKAGES_VOLUME}-uid"}):
            if volume.name.startswith(f"{PACKAGES_VOLUME}-uid"):  # --workdir's, per host uid
                with contextlib.suppress(NotFound):
                    volume.remove()
                    volume_gone = True
    return container is not None, volume_gone


# -- smoke test --------------------------------------------------------------------------------
def smoke_test(
    client: docker.DockerClient,
    terminal: Terminal,
    *,
    quick: bool = False,
    device: str | None = None,
    as_json: bool = False,
) -> int:
    """Run the bundled smoke job inside the running notebook; returns its exit code (0/10/1)."""
    container = find_container(client)
    if container is None or container.status != "running":
        raise DockerError("no local notebook is running", "start one: dlenv local up")
    cmd = ["python", "-m", "dlenv_smoke"]
    if device:
        cmd += ["--device", device]
    if quick:
        cmd.append("--quick")
    if as_json:
        cmd.append("--json")
    api = client.api
    # as the notebook user (a --workdir container starts as root to take the host user's ids)
    user = (container.labels or {}).get(USER_LABEL, "")
    exec_id = api.exec_create(container.id, cmd, stdout=True, stderr=True, user=user)["Id"]
    # the job's stdout (its report, or JSON) to our stdout, its progress lines to our stderr
    import codecs
    import sys

    sinks = [
        (sys.stdout, codecs.getincrementaldecoder("utf-8")("replace")),
        (sys.stderr, codecs.getincrementaldecoder("utf-8")("replace")),
    ]
    for frames in api.exec_start(exec_id, stream=True, demux=True):
        for data, (sink, decoder) in zip(frames, sinks, strict=True):
            if data:
                sink.write(decoder.decode(data))
                sink.flush()
    for sink, decoder in sinks:
        sink.write(decoder.decode(b"", final=True))
        sink.flush()
    code = api.exec_inspect(exec_id).get("ExitCode")
    return 1 if code is None else int(code)


__all__ = ["IMAGE_REPO", "Notebook", "UpOptions", "down", "smoke_test", "status", "up"]


# -- --workdir: a host folder as ~/work ----------------------------------------------------------
IMAGE_UID = IMAGE_GID = 1000
"""The image's notebook user (docker/Dockerfile NB_UID, its own group)."""
WORKDIR_LABEL = "io.dlenv.workdir"
USER_LABEL = "io.dlenv.user"

# Run as root by tini, only in a --workdir container whose host user is not uid 1000: the
# notebook user takes the host user's ids (the docker-stacks NB_UID way), then the image's own
# command runs as that user. /etc/passwd is edited in place because usermod would chown every
# file of the mounted folder; only the image's home (the folder itself pruned) and the packages
# volume are handed over.
_REMAP = r"""
set -eu
uid=$1; gid=$2; work=$3; shift 3
sed -i "s/^dlenv:\([^:]*\):[0-9]*:[0-9]*:/dlenv:\1:$uid:$gid:/" /etc/passwd
getent group "$gid" >/dev/null || sed -i "s/^dlenv:\([^:]*\):[0-9]*:/dlenv:\1:$gid:/" /etc/group
find /home/dlenv -xdev -path "$work" -prune -o \( ! -user "$uid" -o ! -group "$gid" \) \
  -exec chown -h "$uid:$gid" {} +
if [ -d /home/dlenv/.local ]; then
  find /home/dlenv/.local -xdev \( ! -user "$uid" -o ! -group "$gid" \) -exec chown -h "$uid:$gid" {} +
fi
exec setpriv --reuid="$uid" --regid="$gid" --init-groups -- "$@"
"""


@dataclass(frozen=True)
class HostFolder:
    """A validated `--workdir`: its absolute path and the ids the notebook user takes."""

    path: str
    uid: int
    gid: int


def host_folder(path: str) -> HostFolder:
    """Check `--workdir` (an existing folder; spaces fine) and pick whose files the Lab writes.

    The host user's: this process's ids, or under root (sudo, CI) the folder owner's; a folder
    owned by root is refused, since the notebook never runs as root.
    """
    from pathlib import Path

    given = Path(path).expanduser()
    if not given.exists():
        raise UsageError(f"--workdir {path}: no such folder", f"create it first: mkdir -p {path!r}")
    if not given.is_dir():
        raise UsageError(f"--workdir {path} is not a folder", "give a folder to use as ~/work")
    folder = given.resolve()
    if any(c in str(folder) for c in "\n\r\0"):
        raise UsageError(f"--workdir {folder!r} contains a line break", "rename the folder")
    info = folder.stat()
    uid, gid = (os.getuid(), os.getgid()) if os.getuid() != 0 else (info.st_uid, info.st_gid)
    if uid == 0:
        raise UsageError(
            f"--workdir {folder} is owned by root, and the notebook never runs as root",
            f"give a folder an ordinary user owns (e.g. `chown -R USER {folder}`)",
        )
    return HostFolder(str(folder), uid, gid)


def _mount_folder(
    kwargs: dict[str, Any], client: Any, image: str, workdir: str, folder: HostFolder
) -> None:
    """Bind `folder` at the notebook's work dir instead of the work volume (a Mount, so a path
    with `:` or spaces is one path); other ids than the image user's get the remap start."""
    from docker.types import Mount

    volumes = dict(kwargs["volumes"])
    volumes.pop(WORK_VOLUME, None)
    kwargs["mounts"] = [Mount(target=workdir, source=folder.path, type="bind")]
    kwargs["labels"] = {**kwargs["labels"], WORKDIR_LABEL: folder.path}
    # the user's own project folder: the starter notebooks are not copied into it
    kwargs["environment"] = {**kwargs["environment"], "DLENV_SEED_EXAMPLES": "0"}
    if (folder.uid, folder.gid) != (IMAGE_UID, IMAGE_GID):
        config = client.images.get(image).attrs.get("Config", {})
        command = config.get("Cmd") or ["jupyter", "lab"]
        kwargs["user"] = "root"
        kwargs["environment"] = {**kwargs["environment"], "HOME": "/home/dlenv", "USER": "dlenv"}
        kwargs["command"] = [
            "sh", "-c", _REMAP, "dlenv-remap", str(folder.uid), str(folder.gid), workdir, *command
        ]  # fmt: skip
        kwargs["labels"][USER_LABEL] = f"{folder.uid}:{folder.gid}"
        # pip installs of another user id live in a volume of their own (ownership differs)
        for name, spec in list(volumes.items()):
            if spec.get("bind") == PACKAGES_DIR:
                volumes[f"{name}-uid{folder.uid}"] = volumes.pop(name)
    kwargs["volumes"] = volumes
