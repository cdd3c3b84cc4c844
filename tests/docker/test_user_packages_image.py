"""Your own packages in the image and the local notebook, through the real CLI and a real kernel.

One build (`dlenv build --cpu --requirements FILE`, tagged apart so the session's CPU image is
untouched), then the notebook started from it by `dlenv local up --requirements FILE` (which
finds that image by its tag), a `%pip install` in a real kernel, `dlenv local down`, and `up`
again on *another* image (the session's plain CPU image, as after a rebuild): the package is
still there, found after the env's own packages, and `down --volumes` removes both volumes.
"""

from __future__ import annotations

import contextlib
import json

import pytest

from docker_support import build_args, free_port, run_dlenv

pytestmark = [pytest.mark.docker, pytest.mark.slow]
TAG = "dlenv-test/notebook:cpu-user-packages"
BAKED = "tabulate"  # tiny, pure Python, in no stack pin
INSTALLED = "toolz"  # what the user `%pip install`s in the notebook


def run_code(url: str, code: str) -> str:
    from jupyter_ws import shutdown, start_kernel

    base, token = url.split("/lab?token=")
    kernel = start_kernel(base, token, "dlenv")
    try:
        outputs = kernel.execute(code, timeout=300)
    finally:
        shutdown(kernel)
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def test_build_bakes_requirements_and_notebook_pip_installs_survive_down_up(
    docker_client, base_image, build_inputs, cpu_image, isolated_local, tmp_path
) -> None:
    from dlenv.containers.build import BuildRequest, image_tags
    from dlenv.containers.context import UserFiles
    from dlenv.provision.manifest import load_stack

    req = tmp_path / "requirements.txt"
    req.write_text(f"{BAKED}\n")
    built = run_dlenv(
        "build",
        "--cpu",
        "--tag",
        TAG,
        "--requirements",
        str(req),
        *build_args(base_image, build_inputs),
        check=True,
    )
    assert built.stdout.strip() == TAG
    [user_tag] = image_tags(
        load_stack().fingerprint,
        BuildRequest(device="cpu", user_files=UserFiles(requirements=req)),
    )
    image = docker_client.images.get(TAG)
    assert user_tag in image.tags and not any(t.endswith(":latest-cpu") for t in image.tags)
    assert image.labels["io.dlenv.user-packages"] == user_tag.rsplit("-u", 1)[1]
    baked = docker_client.containers.run(
        TAG,
        ["python", "-c", f"import {BAKED}, torch; print({BAKED}.__file__, torch.__version__)"],
        remove=True,
    ).decode()
    assert baked.startswith(f"/opt/dlenv/env/lib/python3.11/site-packages/{BAKED}/")
    assert "+cpu" in baked  # the stack's torch is untouched

    env = {**isolated_local, "JUPYTER_TOKEN": ""}
    packages_volume = f"{isolated_local['DLENV_WORK_VOLUME']}-packages"
    port = free_port()
    try:
        up = run_dlenv(
            "local", "up", "--cpu", "--requirements", str(req), "--port", str(port), env=env
        )
        assert up.returncode == 0, up.stderr
        assert f"(CPU, {user_tag})" in up.stderr and "building" not in up.stderr
        assert f"persists in the {packages_volume} volume (/home/dlenv/.local)" in up.stderr
        url = up.stdout.strip().splitlines()[-1]
        out = run_code(url, f"%pip install -q {INSTALLED}\nimport {INSTALLED}; print('ok')")
        assert out.strip().endswith("ok"), out
        # a package the stack pins cannot be replaced from a notebook (PIP_CONSTRAINT)
        out = run_code(url, "%pip install -q 'numpy==1.26.4'")
        said = out.lower()
        assert "conflict" in said or "could not find a version" in said, out
        logs = docker_client.containers.get(isolated_local["DLENV_LOCAL_CONTAINER"]).logs()
        assert b"[dlenv] pip install in a notebook goes to /home/dlenv/.local" in logs

        down = run_dlenv("local", "down", env=env)
        assert down.returncode == 0 and f"pip installs in {packages_volume}" in down.stderr

        # another image (as after a rebuild): the user's install is still there, after the env
        port = free_port()  # the old one may linger a moment after down
        again = run_dlenv(
            "local", "up", "--cpu", "--image", cpu_image, "--port", str(port), env=env
        )
        assert again.returncode == 0, again.stderr
        url = again.stdout.strip().splitlines()[-1]
        code = (
            "import json, site, sys, numpy, torch, " + INSTALLED + "\n"
            "print(json.dumps([" + INSTALLED + ".__file__, numpy.__version__, torch.__file__,"
            " site.ENABLE_USER_SITE, sys.path.index(site.getusersitepackages())"
            " > sys.path.index('/opt/dlenv/env/lib/python3.11/site-packages')]))"
        )
        where, numpy_version, torch_file, user_site, after_env = json.loads(run_code(url, code))
        assert where.startswith("/home/dlenv/.local/lib/python3.11/site-packages/")
        assert numpy_version == load_stack().get("packages.numpy")
        assert torch_file.startswith("/opt/dlenv/env/") and user_site is True and after_env
        status = run_dlenv("local", "status", env=env)
        assert f"pip installs: {packages_volume} volume" in status.stderr

        gone = run_dlenv("local", "down", "--volumes", "--yes", env=env)
        assert gone.returncode == 0, gone.stderr
        assert f"deleted the {isolated_local['DLENV_WORK_VOLUME']} and {packages_volume}" in (
            gone.stderr
        )
        names = {v.name for v in docker_client.volumes.list()}
        assert packages_volume not in names and isolated_local["DLENV_WORK_VOLUME"] not in names
    finally:
        import docker

        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(isolated_local["DLENV_LOCAL_CONTAINER"]).remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.volumes.get(packages_volume).remove(force=True)
