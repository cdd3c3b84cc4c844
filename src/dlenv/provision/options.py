"""What the user chose for one provisioning run, as one immutable value.

The same object drives the SSH runner and `render_script`, so a Dockerfile and a VM provisioned
with the same options reach the same end state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from dlenv.errors import UsageError

PROFILES = ("vm", "container")
PYTHON_MANAGERS = ("conda", "uv")


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
        if self.idle_stop < 0:
            raise UsageError(
                "--idle-stop cannot be negative", "use --idle-stop 0 to disable auto-stop"
            )
        if self.wheelhouse is not None and not Path(self.wheelhouse).is_dir():
            raise UsageError(f"--wheelhouse {self.wheelhouse} is not a directory")
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise UsageError(f"--ca-bundle {self.ca_bundle} is not a file")
        if self.conda_installer is not None and not Path(self.conda_installer).is_file():
            raise UsageError(f"conda installer {self.conda_installer} is not a file")
        # Bad step names fail here, before any host is contacted.
        from dlenv.provision.steps import validate_selection

        validate_selection(tuple(self.only), "--only")
        validate_selection(tuple(self.skip), "--skip")

    def with_(self, **changes: object) -> ProvisionOptions:
        return replace(self, **changes)
