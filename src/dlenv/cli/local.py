"""`dlenv local`: a JupyterLab container on this machine (GPU when the engine has one, else CPU)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from dlenv.cli.build import build_options, build_request, frameworks_of, user_files
from dlenv.cli.options import json_option

if TYPE_CHECKING:
    from dlenv.cli._app import App
    from dlenv.containers.build import BuildRequest


@click.group()
def local() -> None:
    """Run the notebook image on this machine's Docker engine (no AWS needed).

    \b
    dlenv local up            # GPU if `docker info` shows the NVIDIA runtime, else CPU
    dlenv local smoke-test    # the bundled training job, inside the container
    dlenv local down          # remove the container (the work volume stays)
    """


@local.command()
@click.option("--gpu", "device", flag_value="gpu", help="Insist on the GPU image and a GPU.")
@click.option("--cpu", "device", flag_value="cpu", help="The CPU image, no GPU reservation.")
@click.option(
    "--image", metavar="T", help="Run this image instead of dlenv/notebook:<fingerprint>-*."
)
@click.option(
    "--port",
    "-p",
    type=int,
    metavar="P",
    help="Host port on 127.0.0.1 (default 8888, or the next free one).",
)
@click.option(
    "--build/--no-build",
    "build_",
    default=None,
    help="Rebuild the image first / never build (default: build only when absent).",
)
@click.option(
    "--workdir",
    metavar="DIR",
    help="Use this folder as the notebook's ~/work (files the Lab writes are yours) instead of "
    "the dlenv-work volume.",
)
@build_options
@json_option
@click.pass_obj
def up(
    app: App,
    /,
    device: str | None,
    image: str | None,
    port: int | None,
    build_: bool | None,
    workdir: str | None,
    base_image: str | None,
    wheelhouse: str | None,
    ca_bundle: str | None,
    requirements: str | None,
    conda_env: str | None,
    frameworks: str | None,
    devel: bool,
    no_cache: bool,
    as_json: bool,
) -> None:
    """Start JupyterLab in a container and print its URL (with the token).

    The token is $JUPYTER_TOKEN when set, else a new random one. The port listens on 127.0.0.1
    only. Your files live in the `dlenv-work` volume, kept across `down`/`up`; what you `pip
    install` in a notebook lives in the `dlenv-packages` volume (~/.local), kept too. With
    --requirements FILE (or dlenv.toml packages) the image that has them baked in is run, built
    first when absent.
    """
    from dlenv.containers import engine, notebook
    from dlenv.containers.build import build_image

    files = user_files(app, requirements, conda_env)
    fws = frameworks_of(app, frameworks)
    if fws and image:
        from dlenv.errors import UsageError

        raise UsageError(
            "--image runs an image as it is: it cannot also get --frameworks",
            "drop --image (dlenv builds and runs an image with them), or bake them into "
            "yours: dlenv build --frameworks NAME,... --tag T",
        )
    if files and image:
        from dlenv.errors import UsageError

        raise UsageError(
            "--image runs an image as it is: it cannot also get --requirements/--conda-env",
            "drop --image (dlenv builds and runs an image with your packages), or bake them "
            "into yours: dlenv build --requirements FILE --tag T",
        )
    client = engine.connect()
    wanted: str | None = None

    def request(dev: str, tag: str | None) -> BuildRequest:
        """The build of the `dev` image with these flags (--devel only shapes a GPU image)."""
        return build_request(
            dev,
            tag=tag,
            base_image=base_image,
            wheelhouse=wheelhouse,
            ca_bundle=ca_bundle,
            devel=devel and dev == "gpu",
            no_cache=no_cache,
            user_files=files,
            frameworks=fws,
        )

    def build(dev: str, tag: str | None) -> str:
        built = build_image(client, app.terminal, request(dev, None if tag == wanted else tag))
        return built.tags[0]

    if files or fws:  # packages or frameworks baked in: an image of its own, built when absent
        from docker.errors import ImageNotFound

        from dlenv.containers.build import image_tags
        from dlenv.provision.manifest import load_stack

        device = notebook.choose_device(device, engine.engine_info(client), app.terminal)
        wanted = image = image_tags(load_stack().fingerprint, request(device, None))[0]
        if build_ is None:
            try:
                client.images.get(wanted)
            except ImageNotFound:
                app.terminal.info(
                    f"image {wanted} (your packages or frameworks baked in) is not built yet"
                )
                build_ = True

    opts = notebook.UpOptions(
        device=device,
        image=image,
        port=port,
        build=build_,
        token=os.environ.get("JUPYTER_TOKEN") or None,
        workdir=workdir,
    )
    nb = notebook.up(client, app.terminal, opts, build)
    if as_json:
        app.terminal.json(nb.as_dict())
        return
    app.terminal.success(f"JupyterLab is up ({nb.device.upper()}, {nb.image})")
    app.terminal.result(nb.url)
    app.terminal.note("stop it: dlenv local down   check it: dlenv local smoke-test")
    if nb.workdir:
        app.terminal.note(
            f"~/work is your folder {nb.workdir} (what the Lab writes there is yours)"
        )
    app.terminal.note(
        f"pip install in a notebook persists in the {notebook.PACKAGES_VOLUME} volume "
        f"({notebook.PACKAGES_DIR})"
    )


@local.command()
@click.option(
    "--volumes",
    is_flag=True,
    help="Also delete the dlenv-work volume (your files!) and dlenv-packages (your pip installs).",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask before deleting the work volume.")
@click.pass_obj
def down(app: App, /, volumes: bool, yes: bool) -> None:
    """Stop and remove the notebook container (keeps the work volume unless --volumes)."""
    from dlenv.containers import engine, notebook

    if volumes and not app.terminal.confirm(
        f"delete the {notebook.WORK_VOLUME} volume and every file in it, and the "
        f"{notebook.PACKAGES_VOLUME} volume (your pip installs)?",
        assume_yes=yes,
    ):
        raise click.Abort()
    client = engine.connect()
    removed, volume_gone = notebook.down(client, volumes=volumes)
    if removed:
        app.terminal.success(f"removed {notebook.CONTAINER_NAME}")
    else:
        app.terminal.note("no local notebook container was running")
    if volume_gone:
        app.terminal.success(
            f"deleted the {notebook.WORK_VOLUME} and {notebook.PACKAGES_VOLUME} volumes "
            "(your files and pip installs)"
        )
    elif not volumes:
        app.terminal.note(
            f"your files stay in the {notebook.WORK_VOLUME} volume, your pip installs in "
            f"{notebook.PACKAGES_VOLUME}"
        )


@local.command()
@json_option
@click.pass_obj
def status(app: App, /, as_json: bool) -> None:
    """Show the local notebook (image, device, URL, health)."""
    from dlenv.containers import engine, notebook

    nb = notebook.status(engine.connect())
    if as_json:
        app.terminal.json(nb.as_dict() if nb else None)
        return
    if nb is None:
        app.terminal.note("no local notebook (start one: dlenv local up)")
        return
    app.terminal.table(
        ["image", "device", "status", "health"],
        [[nb.image, nb.device, nb.status, nb.health or "-"]],
    )
    # the URL (with its token) on a line of its own, never folded into a table cell: copyable
    app.terminal.result(nb.url)
    files = f"folder {nb.workdir}" if nb.workdir else f"{notebook.WORK_VOLUME} volume"
    app.terminal.note(
        f"files: {files}; pip installs: {notebook.PACKAGES_VOLUME} volume ({notebook.PACKAGES_DIR})"
    )


@local.command("smoke-test")
@click.option("--quick", is_flag=True, help="The short version (seconds).")
@click.option(
    "--cpu", "device", flag_value="cpu", default=None, help="Test on CPU even with a GPU."
)
@json_option
@click.pass_obj
def smoke_test(app: App, /, quick: bool, device: str | None, as_json: bool) -> None:
    """Run the bundled training job inside the running notebook container.

    Exit code: 0 passed on GPU, 10 passed on CPU only (no GPU), 1 failed.
    """
    from dlenv.containers import engine, notebook

    code = notebook.smoke_test(
        engine.connect(), app.terminal, quick=quick, device=device, as_json=as_json
    )
    # SystemExit, not click's Exit: run_cli (standalone_mode=False) drops Exit's code
    sys.exit(code)
