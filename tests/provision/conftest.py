"""Fixtures for the real-host tests: a pool of host containers, X.509 material."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


# wheelhouse, host_images, isolated_state: tests/conftest.py
@pytest.fixture(scope="session")
def host_pool(host_images: None, isolated_state: Path, tmp_path_factory: pytest.TempPathFactory):
    """start(image) -> TestHost; every host started is removed at the end of the session."""
    from harness import HOST_IMAGE, start_host

    work = tmp_path_factory.mktemp("hosts")
    started = []

    def start(image: str = HOST_IMAGE, **kw):
        host = start_host(image, work=work, **kw)
        started.append(host)
        return host

    yield start
    if os.environ.get("DLENV_TEST_KEEP_HOSTS") != "1":
        for host in started:
            host.stop()


class Pki:
    """Real X.509 material for --ca-bundle tests (made with `cryptography`, like a user's CA)."""

    def key(self):
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

    def cert(self, cn: str):
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
