"""Assemble a Docker build context: the Dockerfile plus everything its COPY lines name.

```
Dockerfile                 docker/Dockerfile as shipped
system.sh                  the rendered provisioning steps, split by layer: apt packages + CA,
stack.sh                   then the Python env + PyTorch + JupyterLab, then the smoke-test job;
smoke.sh                   the SAME steps `dlenv provision` runs over SSH (one source of truth)
stack.toml                 the manifest they were rendered from (kept in the image for the record)
wheelhouse/                --wheelhouse DIR's wheels (only the builder stage sees them)
uploads/                   files the steps read (the checked --ca-bundle), copied to
                           /opt/dlenv/uploads for system.sh, removed by the RUN that runs it
user-uploads/              the user's checked requirements, the same for user.sh
frameworks.sh              the frameworks step (--frameworks tensorflow,jax): an env and kernel
                           each, in a layer of its own after PyTorch's (a no-op without them)
user.sh                    the user-packages step (--requirements ...): a layer of its own, so
                           a changed requirements file never reinstalls PyTorch
user_site.py               makes `pip install` in a notebook persistent (the packages volume)
jupyter_server_config.py   the server's container settings (token from the environment)
```

File contents never travel inside the scripts (the --ca-bundle is a file in uploads/); the
smoke-test package is embedded as base64 of a tarball dlenv builds itself. Big files are
hard-linked (a wheelhouse can be gigabytes); the engine's layer cache keys on content, not on
timestamps, so re-assembling the same inputs rebuilds nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dlenv.errors import UsageError

if TYPE_CHECKING:
    from dlenv.provision.manifest import Stack
    from dlenv.provision.options import ProvisionOptions

DOCKER_FILES = ("Dockerfile", "jupyter_server_config.py", "user_site.py")
WHEEL_SUFFIXES = (".whl", ".tar.gz", ".zip")

USER_UPLOADS = "user-uploads"
"""The build context's folder of the user's checked requirements (user.sh's layer reads it)."""
# Which rendered steps run in which Dockerfile layer (the renderer's step names).
LAYERS: dict[str, tuple[str, ...]] = {
    "system.sh": ("ca-bundle", "base-packages"),
    "stack.sh": ("python-env", "pytorch", "jupyterlab", "scientific"),
    "frameworks.sh": ("frameworks",),
    "user.sh": ("user-packages",),
    "smoke.sh": ("smoke-test",),
}
# uv puts a Python it downloads (base without the manifest's Python) under the env's root, so the
# builder stage's /opt/dlenv holds everything the image needs.
UV_PYTHON_DIR = "/opt/dlenv/python"


@dataclass
class BuildContext:
    path: Path
    device: str
    scripts: dict[str, str] = field(repr=False)
    env_prefix: str = ""
    wheels: list[str] = field(default_factory=list)

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def docker_dir() -> Path:
    from dlenv.paths import data_dir

    return data_dir() / "docker"


@dataclass(frozen=True)
class UserFiles:
    """The user's own packages a build bakes in (`dlenv build --requirements FILE`)."""

    requirements: Path | None = None
    conda_env: Path | None = None
    packages: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.requirements or self.conda_env or self.packages)


def provision_options(
    device: str,
    wheelhouse: Path | None,
    ca_bundle: Path | None,
    only: tuple[str, ...] = (),
    user_files: UserFiles | None = None,
    frameworks: tuple[str, ...] = (),
) -> ProvisionOptions:
    """The provisioning options an image build stands for (container profile, uv, user dlenv)."""
    from dlenv.containers.images import NB_USER
    from dlenv.provision.options import ProvisionOptions

    return ProvisionOptions(
        python="uv",
        profile="container",
        cpu=device == "cpu",
        user=NB_USER,
        idle_stop=0,
        wheelhouse=wheelhouse,
        ca_bundle=ca_bundle,
        only=only,
        extra_env={"UV_PYTHON_INSTALL_DIR": UV_PYTHON_DIR},
        requirements=user_files.requirements if user_files else None,
        conda_env=user_files.conda_env if user_files else None,
        packages=user_files.packages if user_files else (),
        frameworks=tuple(frameworks),
    )


def render_layers(
    stack: Stack,
    device: str,
    wheelhouse: Path | None,
    ca_bundle: Path | None,
    user_files: UserFiles | None = None,
    frameworks: tuple[str, ...] = (),
) -> dict[str, str]:
    """{script name: rendered script} for the Dockerfile's three provisioning layers."""
    from dlenv.provision.render import render_script
    from dlenv.provision.steps import STEP_NAMES

    scripts = {}
    covered: set[str] = set()
    for name, steps in LAYERS.items():
        covered.update(steps)
        # only user.sh sees the user's files: the other layers' scripts stay byte-identical
        # with and without them, so the cached PyTorch layer is reused
        mine = user_files if "user-packages" in steps else None
        # likewise only frameworks.sh sees --frameworks (it rewrites the Lab's kernel list too)
        fws = frameworks if "frameworks" in steps else ()
        scripts[name] = render_script(
            stack,
            provision_options(
                device, wheelhouse, ca_bundle, only=steps, user_files=mine, frameworks=fws
            ),
        )
    # a step added to the stack must be placed in a layer, or images would silently lack it
    vm_only = {"nvidia-driver", "cuda-toolkit", "efa", "jupyterlab-service", "idle-autostop"}
    missing = [s for s in STEP_NAMES if s not in covered and s not in vm_only]
    if missing:  # pragma: no cover - guards a future manifest change
        raise UsageError(
            f"the image build does not place step(s) {', '.join(missing)}",
            "add them to dlenv.containers.context.LAYERS",
        )
    return scripts


def assemble(
    stack: Stack,
    device: str,
    *,
    wheelhouse: Path | None = None,
    ca_bundle: Path | None = None,
    into: Path | None = None,
    user_files: UserFiles | None = None,
    frameworks: tuple[str, ...] = (),
) -> BuildContext:
    """Write a build context into `into` (or a new temporary folder) and describe it."""
    from dlenv.provision.steps import env_prefix

    if wheelhouse is not None:
        check_wheelhouse(wheelhouse)
    if ca_bundle is not None:
        check_pem(ca_bundle)
    if into is None:
        path = Path(tempfile.mkdtemp(prefix="dlenv-build-"))
    else:
        path = into
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            raise UsageError(f"{path} is not empty", "give a new or empty folder")

    source = docker_dir()
    for name in DOCKER_FILES:
        _link_or_copy(source / name, path / name)
    if stack.path is not None:
        _link_or_copy(stack.path, path / "stack.toml")
    else:  # pragma: no cover - load_stack always records its path
        (path / "stack.toml").write_text("")

    scripts = render_layers(stack, device, wheelhouse, ca_bundle, user_files, frameworks)
    for name, text in scripts.items():
        (path / name).write_text(text)
        os.chmod(path / name, 0o644)
    from dlenv.provision.render import write_uploads

    # always there (the Dockerfile COPYs it), holding just .keep when no step reads a file
    (path / "uploads").mkdir()
    (path / "uploads" / ".keep").write_text("")
    write_uploads(stack, provision_options(device, wheelhouse, ca_bundle), path)
    # the user's files in a folder of their own: only the user.sh layer COPYs it, so editing
    # them never invalidates the system layer (and everything after it)
    user_dir = path / USER_UPLOADS
    user_dir.mkdir()
    (user_dir / ".keep").write_text("")
    if user_files:
        from dlenv.provision.steps import upload_files

        for remote, text in upload_files(
            stack, provision_options(device, None, None, user_files=user_files)
        ).items():
            (user_dir / Path(remote).name).write_text(text)
            os.chmod(user_dir / Path(remote).name, 0o644)

    wheels_dir = path / "wheelhouse"
    wheels_dir.mkdir()
    (wheels_dir / ".keep").write_text("")
    wheels: list[str] = []
    if wheelhouse is not None:
        for wheel in sorted(wheelhouse.iterdir()):
            if wheel.is_file() and wheel.name.endswith(WHEEL_SUFFIXES):
                _link_or_copy(wheel, wheels_dir / wheel.name)
                wheels.append(wheel.name)
    prefix = env_prefix(stack, provision_options(device, None, None))
    return BuildContext(path=path, device=device, scripts=scripts, env_prefix=prefix, wheels=wheels)


def check_wheelhouse(path: Path) -> None:
    if not path.is_dir():
        raise UsageError(f"--wheelhouse {path} is not a directory")
    if not any(p.name.endswith(WHEEL_SUFFIXES) for p in path.iterdir()):
        raise UsageError(
            f"--wheelhouse {path} holds no wheels (*.whl)",
            "point it at a folder of wheels, e.g. from `pip download -d DIR ...`",
        )


def check_pem(path: Path) -> None:
    """The --ca-bundle is X.509 PEM certificates only (one check for every channel)."""
    from dlenv.provision.options import read_ca_bundle

    read_ca_bundle(path)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link big files (wheels); copy small ones with a stable mode (the cache sees modes)."""
    if src.stat().st_size > 1_000_000:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o644)
