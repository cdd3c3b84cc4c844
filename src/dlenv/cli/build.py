"""`dlenv build`: build the notebook image (CPU or GPU) from the stack manifest."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from dlenv.cli._app import App
    from dlenv.containers.build import BuildRequest
    from dlenv.containers.context import UserFiles

F = Callable[..., Any]


def build_options(func: F) -> F:
    """Options that shape a build; shared with `dlenv local up` (which builds when needed)."""
    decorators = [
        click.option(
            "--base-image",
            metavar="IMG",
            envvar="DLENV_BASE_IMAGE",
            show_envvar=True,
            help="Base image (default: Ubuntu 24.04 pinned by digest; --devel: "
            "nvidia/cuda cudnn-devel). Must be Debian/Ubuntu with apt.",
        ),
        click.option(
            "--wheelhouse",
            metavar="DIR",
            envvar="DLENV_WHEELHOUSE",
            show_envvar=True,
            type=click.Path(exists=True, file_okay=False),
            help="Folder of wheels installed before the index is asked (offline or "
            "air-gapped builds, a local torch wheel). Kept out of the final image.",
        ),
        click.option(
            "--ca-bundle",
            metavar="FILE",
            envvar="DLENV_CA_BUNDLE",
            show_envvar=True,
            type=click.Path(exists=True, dir_okay=False),
            help="Extra CA certificates (PEM) trusted during the build and in the image "
            "(corporate TLS proxies).",
        ),
        click.option(
            "--requirements",
            metavar="FILE",
            default=None,
            help="Bake your pip requirements into the image (the stack's torch/numpy pins "
            "held; the image gets a tag of its own). [env: DLENV_REQUIREMENTS; dlenv.toml: "
            "requirements; dlenv.toml packages = [...] too]",
        ),
        click.option(
            "--conda-env",
            metavar="FILE",
            default=None,
            help="An environment.yml whose pip: section is baked in (the image's env is uv: "
            "conda packages are refused). [env: DLENV_CONDA_ENV; dlenv.toml: conda_env]",
        ),
        click.option(
            "--frameworks",
            metavar="NAME,...",
            default=None,
            help="Bake more frameworks in as their own kernels, each in its own env: "
            "tensorflow, jax (the image gets a tag of its own). [env: DLENV_FRAMEWORKS; "
            "dlenv.toml: frameworks]",
        ),
        click.option(
            "--devel",
            is_flag=True,
            help="GPU image on nvidia/cuda cudnn-devel (nvcc, headers: to compile CUDA "
            "extensions). Larger; tagged *-gpu-devel.",
        ),
        click.option("--no-cache", is_flag=True, help="Rebuild every layer."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def user_files(app: Any, requirements: str | None, conda_env: str | None) -> UserFiles:
    """The user's packages a build bakes in: the flags, else DLENV_* / dlenv.toml (whose
    `packages = [...]` count too; an untrusted project file's are ignored with a notice)."""
    from pathlib import Path

    from dlenv.containers.context import UserFiles

    settings = app.settings(requirements=requirements, conda_env=conda_env)
    return UserFiles(
        requirements=Path(settings.requirements) if settings.requirements else None,
        conda_env=Path(settings.conda_env) if settings.conda_env else None,
        packages=tuple(settings.packages or ()),
    )


def frameworks_of(app: Any, frameworks: str | None) -> tuple[str, ...]:
    """The frameworks a build bakes in: the flag, else DLENV_FRAMEWORKS / dlenv.toml."""
    return tuple(app.settings(frameworks=frameworks).frameworks or ())


def build_request(
    device: str,
    *,
    tag: str | None,
    base_image: str | None,
    wheelhouse: str | None,
    ca_bundle: str | None,
    devel: bool,
    no_cache: bool,
    user_files: UserFiles | None = None,
    frameworks: tuple[str, ...] = (),
) -> BuildRequest:
    from pathlib import Path

    from dlenv.containers.build import BuildRequest
    from dlenv.containers.context import UserFiles

    return BuildRequest(
        user_files=user_files or UserFiles(),
        frameworks=tuple(frameworks),
        device=device,
        tag=tag,
        base_image=base_image,
        wheelhouse=Path(wheelhouse) if wheelhouse else None,
        ca_bundle=Path(ca_bundle) if ca_bundle else None,
        devel=devel,
        no_cache=no_cache,
    )


@click.command()
@click.option("--cpu", "device", flag_value="cpu", help="Build the CPU image (CPU PyTorch).")
@click.option(
    "--gpu",
    "device",
    flag_value="gpu",
    default=True,
    help="Build the GPU image (CUDA PyTorch; the default).",
)
@click.option("--tag", "-t", metavar="T", help="Also tag the image T (e.g. myorg/notebook:1).")
@click.option(
    "--context",
    "context_dir",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Do not build: write the build context to DIR (new or empty) and print the matching "
    "`docker build` command (for buildx, registries, CI caches).",
)
@build_options
@click.pass_obj
def build(
    app: App,
    /,
    device: str,
    tag: str | None,
    context_dir: str | None,
    base_image: str | None,
    wheelhouse: str | None,
    ca_bundle: str | None,
    requirements: str | None,
    conda_env: str | None,
    frameworks: str | None,
    devel: bool,
    no_cache: bool,
) -> None:
    """Build the JupyterLab + PyTorch image from the stack manifest.

    Tags dlenv/notebook:<stack-fingerprint>-{gpu,cpu} and dlenv/notebook:latest-{gpu,cpu} (with
    your packages: dlenv/notebook:<stack-fingerprint>-{gpu,cpu}-u<their digest> only). The
    Python env, PyTorch and JupyterLab are installed by the same provisioning steps `dlenv
    provision` runs over SSH. Builds with BuildKit (docker buildx) when available, else with the
    engine's classic builder through the Docker SDK [env: DLENV_BUILDER=buildkit|legacy]. Prints
    the image reference on stdout.

    \b
    dlenv build --cpu
    dlenv build --cpu --wheelhouse ./wheels --ca-bundle corp-ca.pem
    dlenv build --cpu --requirements requirements.txt   # tagged ...-cpu-u<digest>
    dlenv build --cpu --frameworks jax,tensorflow        # tagged ...-cpu-jax-tensorflow
    dlenv build --context ./ctx    # then run the printed `docker build ...` yourself
    """
    import shlex
    from pathlib import Path

    from dlenv.containers import engine
    from dlenv.containers.build import build_image, write_context

    request = build_request(
        device,
        tag=tag,
        base_image=base_image,
        wheelhouse=wheelhouse,
        ca_bundle=ca_bundle,
        devel=devel,
        no_cache=no_cache,
        user_files=user_files(app, requirements, conda_env),
        frameworks=frameworks_of(app, frameworks),
    )
    if context_dir is not None:
        path, cmd = write_context(request, Path(context_dir))
        app.terminal.success(f"wrote the build context to {path}; build it with:")
        app.terminal.result(shlex.join(cmd))
        return
    client = engine.connect()
    built = build_image(client, app.terminal, request)
    app.terminal.result(built.tags[0])
