"""Build the host images and start/stop host containers on 127.0.0.1 random ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from harness.locks import CACHE, claim_slot, file_lock
from harness.ports import free_port

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "dlenv-test/debian12-systemd"
HOST_IMAGE = "dlenv-test/debian12-host"
UNSUPPORTED_IMAGE = "dlenv-test/unsupported-host"
NO_EXTRA_CA_IMAGE = "dlenv-test/debian12-host-stock-cas"
BASE_PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,sudo,iproute2,procps,curl,pciutils,rsync"
USER = "dlenv"
HOST_REV_LABEL = "io.dlenv.test.host-rev"
HOST_REV = "2"
"""Bumped when the host image's Dockerfile changes: a cached image with another revision is rebuilt
(2: rsync)."""

_HOST_DOCKERFILE = f"""
FROM {BASE_IMAGE}
RUN useradd -m -s /bin/bash {USER} \\
 && echo '{USER} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{USER} && chmod 440 /etc/sudoers.d/{USER} \\
 && install -d -m 700 -o {USER} -g {USER} /home/{USER}/.ssh \\
 && rm -f /etc/ssh/ssh_host_* \\
 && printf '[Unit]\\nDescription=per-machine SSH host keys\\nBefore=ssh.service\\n[Service]\\nType=oneshot\\nExecStart=/usr/bin/ssh-keygen -A\\n[Install]\\nWantedBy=multi-user.target\\n' \\
    > /etc/systemd/system/test-hostkeys.service \\
 && systemctl enable test-hostkeys.service ssh.service \\
 && systemctl mask systemd-udevd.service systemd-udev-trigger.service getty@tty1.service \\
    console-getty.service systemd-firstboot.service \\
 && echo 'host' > /etc/hostname
# `dlenv sync` needs rsync on the host (a base image from before it was in BASE_PACKAGES lacks it)
RUN command -v rsync >/dev/null || (apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rsync >/dev/null \
 && rm -rf /var/lib/apt/lists/*)
LABEL {HOST_REV_LABEL}="{HOST_REV}"
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
"""

_UNSUPPORTED_DOCKERFILE = f"""
FROM {HOST_IMAGE}
RUN rm -f /etc/os-release && printf 'NAME="Fedora Linux"\\nID=fedora\\nVERSION_ID=40\\nPRETTY_NAME="Fedora Linux 40"\\n' > /etc/os-release
"""


# The host image minus the machine's extra CAs (a TLS-inspecting proxy's): only Debian's stock
# bundle, like a fresh VM behind a corporate proxy before --ca-bundle is given.
_NO_EXTRA_CA_DOCKERFILE = f"""
FROM {HOST_IMAGE}
RUN rm -f /usr/local/share/ca-certificates/* && update-ca-certificates --fresh >/dev/null 2>&1
"""


def engine_status() -> tuple[bool, str]:
    if shutil.which("docker") is None:
        return False, "no docker client (run scripts/ensure-docker)"
    proc = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        return (
            False,
            f"Docker engine not reachable (run scripts/ensure-docker): {proc.stderr.strip()[:200]}",
        )
    return True, proc.stdout.strip()


def require_engine() -> None:
    """Fail the calling test where no engine answers: scripts/test starts one, so its absence is
    a broken setup, not a reason to skip. Skip only where the run said so (DLENV_TEST_NO_DOCKER=1,
    as the docker fixtures do)."""
    import pytest

    if os.environ.get("DLENV_TEST_NO_DOCKER") == "1":
        pytest.skip("DLENV_TEST_NO_DOCKER=1")
    ok, reason = engine_status()
    if not ok:
        pytest.fail(reason)


def _image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def _label(image: str, key: str) -> str | None:
    proc = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{key}"}}}}', image],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _build(name: str, dockerfile: str) -> None:
    proc = subprocess.run(
        ["docker", "build", "-q", "-t", name, "-"], input=dockerfile, text=True, capture_output=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building {name} failed:\n{proc.stderr[-2000:]}")


def ensure_images() -> None:
    """Base (debootstrap, ~90 s once), fresh-VM host and unsupported-OS host images, cached.

    Under a file lock: xdist workers each call this, and only the first one builds."""
    with file_lock("host-images"):
        _ensure_images()


def _ensure_images() -> None:
    if not _image_exists(BASE_IMAGE):
        subprocess.run(
            [str(REPO / "scripts" / "make-base-image"), BASE_IMAGE, BASE_PACKAGES], check=True
        )
    if not _image_exists(HOST_IMAGE) or _label(HOST_IMAGE, HOST_REV_LABEL) != HOST_REV:
        _build(HOST_IMAGE, _HOST_DOCKERFILE)
    if not _image_exists(UNSUPPORTED_IMAGE):
        _build(UNSUPPORTED_IMAGE, _UNSUPPORTED_DOCKERFILE)
    if not _image_exists(NO_EXTRA_CA_IMAGE):
        _build(NO_EXTRA_CA_IMAGE, _NO_EXTRA_CA_DOCKERFILE)


def test_key() -> Path:
    """An ed25519 key pair for the test user (kept in the test cache, 0600)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    key = CACHE / "id_ed25519"
    with file_lock("test-key"):  # xdist workers: one key, made once
        if not key.exists() or not key.with_suffix(".pub").exists():
            key.unlink(missing_ok=True)
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dlenv-test", "-f", str(key)],
                check=True,
            )
    key.chmod(0o600)
    return key


@dataclass
class TestHost:
    container: str
    port: int
    key: Path
    known_hosts: Path
    host_keys: list[str] = field(default_factory=list)
    apt_claim: IO[str] | None = field(default=None, repr=False)

    __test__ = False  # not a pytest test class

    @property
    def spec(self) -> str:
        return f"{USER}@127.0.0.1:{self.port}"

    def target(self, *, known: bool = True, name: str | None = None):
        from dlenv.ssh.target import SshTarget

        return SshTarget(
            host="127.0.0.1",
            user=USER,
            port=self.port,
            key_file=self.key,
            known_hosts=self.known_hosts if known else self.known_hosts.with_suffix(".empty"),
            name=name,
        )

    def exec(
        self, command: str, *, check: bool = False, user: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = (
            ["docker", "exec"]
            + (["-u", user] if user else [])
            + [self.container, "bash", "-c", command]
        )
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)

    def stop(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True)
        if self.apt_claim is not None:  # the apt archive dir is free for the next host
            self.apt_claim.close()
            self.apt_claim = None


def start_host(
    image: str = HOST_IMAGE,
    *,
    work: Path,
    shared_caches: bool = True,
    name_prefix: str = "dlenv-test-host",
    rebootable: bool = False,
    network: str | None = None,
) -> TestHost:
    """Start a systemd host container with sshd on 127.0.0.1:<random port>; wait for SSH.

    `rebootable`: restart policy "always" and a fixed published port, so `systemctl reboot`
    inside behaves like a VM reboot (the container comes back on the same address).

    `network`: a Docker network to attach the host to (instead of the default bridge).

    `shared_caches` mounts an apt archive dir kept across hosts (a local mirror, in effect), so
    repeated fresh provisions do not re-download the same Debian packages. Each running host has
    one of its own (a numbered slot, claimed with a file lock until `stop`): apt-get locks the dir
    and fails, not waits, while another host (in parallel, in another xdist worker or another
    pytest run) installs from it.
    """
    key = test_key()
    name = f"{name_prefix}-{uuid.uuid4().hex[:8]}"
    argv = [
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--label",
        "dlenv-test=1",
        "--hostname",
        "host",
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "--tmpfs",
        "/tmp:exec",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        "-p",
        f"127.0.0.1:{free_port()}:22" if rebootable else "127.0.0.1::22",
    ]
    if rebootable:
        argv += ["--restart", "always"]
    if network:  # a user-defined network: the hosts reach each other by private address
        argv += ["--network", network]
    apt_claim = None
    if shared_caches:
        # apt archives only: a uv cache shared across hosts grows by the unpacked torch wheel
        # (~0.8 GB) on every fresh host, since each host's uploaded wheel is a new file to uv.
        slot, apt_claim = claim_slot("apt-archives")
        apt_cache = CACHE / ("apt-archives" if slot == 0 else f"apt-archives-{slot}")
        (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
        argv += ["-v", f"{apt_cache}:/var/cache/apt/archives", "-e", "container=docker"]
    argv += [image, "/sbin/init"]
    try:
        cid = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError:
        if apt_claim is not None:
            apt_claim.close()
        raise
    port = int(
        subprocess.run(
            ["docker", "port", cid, "22/tcp"], capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .splitlines()[0]
        .rsplit(":", 1)[1]
    )
    host = TestHost(
        container=name,
        port=port,
        key=key,
        known_hosts=work / f"known_hosts-{name}",
        apt_claim=apt_claim,
    )
    pub = key.with_suffix(".pub").read_text().strip()
    host.exec(
        f"echo '{pub}' > /home/{USER}/.ssh/authorized_keys && chown {USER}: "
        f"/home/{USER}/.ssh/authorized_keys && chmod 600 /home/{USER}/.ssh/authorized_keys",
        check=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        res = host.exec("systemctl is-active ssh && cat /etc/ssh/ssh_host_*_key.pub")
        if res.returncode == 0 and _banner(port):
            host.host_keys = [
                ln for ln in res.stdout.splitlines() if ln.startswith(("ssh-", "ecdsa-"))
            ]
            break
        time.sleep(1)
    else:
        logs = subprocess.run(
            ["docker", "logs", "--tail", "30", cid], capture_output=True, text=True
        )
        host.stop()
        raise RuntimeError(
            f"sshd did not come up in {name}: {logs.stdout[-1500:]}{logs.stderr[-1500:]}"
        )
    host.known_hosts.write_text(
        "".join(f"[127.0.0.1]:{port} {' '.join(k.split()[:2])}\n" for k in host.host_keys)
    )
    return host


def _banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(2)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False
