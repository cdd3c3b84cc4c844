"""Real test hosts: systemd "fresh VM" containers with sshd, reached over real SSH.

Images are built locally (no registry here): `scripts/make-base-image` debootstraps Debian 12
with systemd + sshd + sudo, then a tiny Dockerfile adds the `dlenv` user (passwordless sudo) and
per-container host keys. Nothing Python-env or Jupyter is in them: the tests provision that.
Images are cached by name (delete them to rebuild). Without a Docker engine, `require_engine()`
fails the calling test with the fix (it skips only under DLENV_TEST_NO_DOCKER=1).
"""

from harness.hosts import (
    BASE_IMAGE,
    HOST_IMAGE,
    NO_EXTRA_CA_IMAGE,
    UNSUPPORTED_IMAGE,
    TestHost,
    engine_status,
    ensure_images,
    require_engine,
    start_host,
    test_key,
)

__all__ = [
    "BASE_IMAGE",
    "HOST_IMAGE",
    "NO_EXTRA_CA_IMAGE",
    "UNSUPPORTED_IMAGE",
    "TestHost",
    "engine_status",
    "ensure_images",
    "require_engine",
    "start_host",
    "test_key",
]
