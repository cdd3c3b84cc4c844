"""What the user chose for one provisioning run, as one immutable value.

The same object drives the SSH runner and `render_script`, so a Dockerfile and a VM provisioned
with the same options reach the same end state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from dlenv.errors import UsageError

PROFILES = ("vm", "container")
PYTHON_MANAGERS = ("conda", "uv")

UPLOAD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
"""What a file dlenv uploads may be called (wheels, installers): the name becomes part of remote
paths and build contexts, so anything a shell, a Dockerfile or a listing could read as more than
one plain word (quotes, `$`, `;`, spaces, newlines, a leading `-`) is refused up front."""
WHEEL_SUFFIXES = (".whl", ".tar.gz", ".zip")
"""Files of a --wheelhouse that any channel uses (the runner uploads the *.whl ones)."""
USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._@-]{0,63}")
"""A login user name: the POSIX portable set plus `@` (directory users such as `ann@corp`, which
`id -un` can print on an SSH box). It is written into systemd units and shell variables, so
nothing else is accepted."""
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_CA_BUNDLE_BYTES = 1024 * 1024
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")


def check_upload_name(path: Path, flag: str) -> None:
    """Refuse a file whose name could be more than one inert word on the other side."""
    name = Path(path).name
    if not UPLOAD_NAME.fullmatch(name):
        raise UsageError(
            f"{flag}: file name {name!r} is not allowed: only letters, digits and ._+- "
            "(not first); no spaces, quotes, newlines or shell characters",
            "rename the file (wheel and installer names never need anything else)",
        )


def wheelhouse_files(path: Path) -> list[Path]:
    """The files of a wheelhouse some channel uses, each name checked (`check_upload_name`)."""
    files = sorted(p for p in Path(path).iterdir() if p.name.endswith(WHEEL_SUFFIXES))
    for file in files:
        check_upload_name(file, f"--wheelhouse {path}")
    return files


def read_ca_bundle(path: Path) -> str:
    """The --ca-bundle text as hosts get it: X.509 PEM certificates, nothing else that matters.

    Parsed with `cryptography` so only a real bundle goes anywhere: empty files, DER, garbage, a
    private key (never ship one) or anything over 1 MiB is refused with one line naming the file.
    Text outside the PEM blocks (the `# Subject:` comments bundles carry) is kept, as before.
    Returns the text stripped plus one newline (byte-identical to what the Ansible role writes).
    """
    path = Path(path)
    fix = "give the CA certificate(s) as PEM (-----BEGIN CERTIFICATE----- ...)"
    if not path.is_file():
        raise UsageError(f"--ca-bundle {path} is not a file", fix)
    try:
        size = path.stat().st_size
        if size > MAX_CA_BUNDLE_BYTES:
            raise UsageError(
                f"--ca-bundle {path} is {size} bytes, over the 1 MiB a CA bundle can be", fix
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--ca-bundle {path} cannot be read: {exc.strerror or exc}", fix) from None
    if len(raw) > MAX_CA_BUNDLE_BYTES:  # grew between stat and read
        raise UsageError(f"--ca-bundle {path} is over the 1 MiB a CA bundle can be", fix)
    if not raw.strip():
        raise UsageError(f"--ca-bundle {path} is empty", fix)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        if raw[:1] == b"\x30":  # an ASN.1 SEQUENCE: a DER certificate
            raise UsageError(
                f"--ca-bundle {path} is DER (binary), not PEM",
                f"convert it: openssl x509 -inform der -in {path} -out ca.pem",
            ) from None
        raise UsageError(f"--ca-bundle {path} is binary, not a PEM text file", fix) from None
    if "\0" in text:
        raise UsageError(f"--ca-bundle {path} is binary, not a PEM text file", fix)
    labels = _PEM_BLOCK.findall(text)
    if any("PRIVATE KEY" in label for label in labels):
        raise UsageError(
            f"--ca-bundle {path} contains a private key: refusing to copy it anywhere",
            "give only the CA certificate(s); keep the key where it is",
        )
    others = sorted({label for label in labels if label != "CERTIFICATE"})
    if others:
        raise UsageError(
            f"--ca-bundle {path} holds {', '.join(others)} block(s), not only certificates", fix
        )
    if not labels:
        raise UsageError(f"--ca-bundle {path} holds no PEM certificate", fix)
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError as exc:
        raise UsageError(
            f"--ca-bundle {path} has a certificate that does not parse "
            f"({str(exc).splitlines()[0] if str(exc) else 'invalid'})",
            fix,
        ) from None
    if len(certs) != len(labels):  # pragma: no cover - cryptography parses every block or raises
        raise UsageError(
            f"--ca-bundle {path}: only {len(certs)} of {len(labels)} blocks parse", fix
        )
    return text.strip() + "\n"


@dataclass(frozen=True)
class ProvisionOptions:
    python: str = "conda"
    """conda (Miniforge/Anaconda installer, sha256-checked) or uv."""
    conda_dist: str | None = None
    """miniforge | anaconda; None = the manifest's default."""
    conda_installer: Path | None = None
    """A local installer file used instead of downloading (air-gapped hosts; still sha256-checked)."""
    wheelhouse: Path | None = None
    """Local directory of wheels: uploaded to the host and preferred by every pip/uv install.
    `render_script` expects the wheels at `<python.root>/wheelhouse` (the Dockerfile copies them)."""
    ca_bundle: Path | None = None
    """Extra CA certificate(s) (PEM) trusted by apt, pip, uv and conda (TLS-inspecting proxies)."""
    idle_stop: int = 60
    """Minutes idle before `shutdown -h`; 0 disables the auto-stop timer."""
    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    cpu: bool = False
    """Treat the host as GPU-less: no driver/CUDA steps, CPU torch."""
    profile: str = "vm"
    """vm: a systemd machine (services, timers, driver). container: an image build (no systemd)."""
    user: str | None = None
    """The login user owning the env and running Jupyter (default: the SSH user; root -> root)."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """Extra environment for every step (e.g. PIP_INDEX_URL for a mirror the user chose)."""

    def __post_init__(self) -> None:
        if self.python not in PYTHON_MANAGERS:
            raise UsageError(
                f"--python {self.python!r} is not conda or uv", "use --python conda or --python uv"
            )
        if self.profile not in PROFILES:
            raise UsageError(f"profile {self.profile!r} is not vm or container")
        if isinstance(self.idle_stop, bool) or not isinstance(self.idle_stop, int):
            raise UsageError(f"--idle-stop {self.idle_stop!r} is not a whole number of minutes")
        if self.idle_stop < 0:
            raise UsageError(
                "--idle-stop cannot be negative", "use --idle-stop 0 to disable auto-stop"
            )
        if self.wheelhouse is not None:
            if not Path(self.wheelhouse).is_dir():
                raise UsageError(f"--wheelhouse {self.wheelhouse} is not a directory")
            wheelhouse_files(Path(self.wheelhouse))
        if self.ca_bundle is not None:
            read_ca_bundle(Path(self.ca_bundle))
        if self.conda_installer is not None:
            if not Path(self.conda_installer).is_file():
                raise UsageError(f"conda installer {self.conda_installer} is not a file")
            check_upload_name(
                Path(self.conda_installer), f"--conda-installer {Path(self.conda_installer).parent}"
            )
        if self.user is not None and not USER_NAME.fullmatch(self.user):
            raise UsageError(
                f"user {self.user!r} is not a valid login name",
                "use letters, digits, '.', '_', '@' and '-' (starting with a letter or _)",
            )
        bad_env = [k for k in self.extra_env if not ENV_NAME.fullmatch(k)]
        if bad_env:
            raise UsageError(f"{bad_env[0]!r} is not an environment variable name")
        # Bad step names fail here, before any host is contacted.
        from dlenv.provision.steps import validate_selection

        validate_selection(tuple(self.only), "--only")
        validate_selection(tuple(self.skip), "--skip")

    def with_(self, **changes: object) -> ProvisionOptions:
        return replace(self, **changes)
