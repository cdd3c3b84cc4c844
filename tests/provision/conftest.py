"""Fixtures for the real-host tests: images, host containers, an isolated dlenv state dir."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def find_links_dir() -> Path | None:
    """The wheel directory pip's find-links names (where this machine keeps the CPU torch)."""
    value = os.environ.get("PIP_FIND_LINKS")
    if not value:
        proc = subprocess.run(
            ["pip", "config", "get", "global.find-links"], capture_output=True, text=True
        )
        value = proc.stdout.strip() if proc.returncode == 0 else ""
    for entry in value.split():
        path = Path(entry.removeprefix("file://"))
        if path.is_dir() and any(path.glob("torch-*.whl")):
            return path
    return None


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    path = find_links_dir()
    if path is None:
        pytest.skip("no CPU torch wheel in pip's find-links directory (set PIP_FIND_LINKS)")
    return path


@pytest.fixture(scope="session")
def host_images() -> None:
    from harness import ensure_images, require_engine

    require_engine()
    ensure_images()


@pytest.fixture(scope="session")
def isolated_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    state = tmp_path_factory.mktemp("dlenv-state")
    old = os.environ.get("DLENV_STATE_DIR")
    os.environ["DLENV_STATE_DIR"] = str(state)
    yield state
    if old is None:
        os.environ.pop("DLENV_STATE_DIR", None)
    else:
        os.environ["DLENV_STATE_DIR"] = old


@pytest.fixture(scope="session")
def host_pool(host_images: None, isolated_state: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """start(image) -> TestHost; every host started is removed at the end of the session."""
    from harness import HOST_IMAGE, start_host

    work = tmp_path_factory.mktemp("hosts")
    started = []

    def start(image: str = HOST_IMAGE, **kw):  # type: ignore[no-untyped-def]
        host = start_host(image, work=work, **kw)
        started.append(host)
        return host

    yield start
    if os.environ.get("DLENV_TEST_KEEP_HOSTS") != "1":
        for host in started:
            host.stop()


class Pki:
    """Real X.509 material for --ca-bundle tests (made with `cryptography`, like a user's CA)."""

    def key(self):  # type: ignore[no-untyped-def]
        from cryptography.hazmat.primitives.asymmetric import ec

        return ec.generate_private_key(ec.SECP256R1())

    def key_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return (
            self.key()
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        )

    def cert(self, cn: str):  # type: ignore[no-untyped-def]
        """A self-signed CA certificate named `cn`."""
        import datetime as dt

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        key = self.key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = dt.datetime.now(dt.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )

    def cert_pem(self, cn: str) -> str:
        from cryptography.hazmat.primitives import serialization

        return self.cert(cn).public_bytes(serialization.Encoding.PEM).decode()

    def cert_der(self, cn: str) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.cert(cn).public_bytes(serialization.Encoding.DER)

    def bundle(self, path: Path, *names: str) -> Path:
        """A multi-certificate bundle with the `# Subject` comments real bundles carry."""
        path.write_text(
            "".join(f"# {n}\n{self.cert_pem(n)}\n" for n in names or ("dlenv test CA",))
        )
        return path


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki()
