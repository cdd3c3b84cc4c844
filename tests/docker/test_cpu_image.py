"""The CPU image for real: built by `dlenv build`, run by `docker compose` and by `dlenv local`.

Marked `docker`: they need a running engine (scripts/test installs and starts one). The image is
built once per session from a Debian 12 minbase and the on-disk CPU torch wheel; the engine's
layer cache keeps later runs to seconds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid

import pytest

from docker_support import (
    CPU_IMAGE,
    api_status,
    build_args,
    free_port,
    local_up,
    run_dlenv,
    wait_for,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


# -- helpers -------------------------------------------------------------------------------------
def execute_in_kernel(port: int, token: str, code: str, kernel: str = "dlenv") -> str:
    """Run `code` on a fresh `kernel` of the server (jupyter_ws: the browser's protocol) and
    return what it printed."""
    from jupyter_ws import shutdown, start_kernel

    started = start_kernel(f"http://127.0.0.1:{port}", token, kernel)
    try:
        outputs = started.execute(code)
    finally:
        shutdown(started)
    return "".join(o["text"] for o in outputs if o["output_type"] == "stream")


def container_health(container) -> str | None:
    container.reload()
    return (container.attrs["State"].get("Health") or {}).get("Status")


# -- the image itself ----------------------------------------------------------------------------
def test_build_tags_labels_user_and_entrypoint(docker_client, cpu_build, cpu_image):
    from dlenv.provision.manifest import load_stack

    stack = load_stack()
    assert cpu_build.stdout.strip() == CPU_IMAGE
    image = docker_client.images.get(cpu_image)
    assert f"dlenv/notebook:{stack.fingerprint}-cpu" in image.tags
    assert "dlenv/notebook:latest-cpu" in image.tags
    labels = image.labels
    assert labels["io.dlenv.stack.fingerprint"] == stack.fingerprint
    assert labels["io.dlenv.stack.torch"] == stack.packages["torch"]
    assert labels["io.dlenv.stack.jupyterlab"] == stack.packages["jupyterlab"]
    assert labels["io.dlenv.variant"] == "cpu"
    assert labels["org.opencontainers.image.version"] == f"{stack.fingerprint}-cpu"
    config = image.attrs["Config"]
    assert config["User"] == "dlenv"
    assert config["Entrypoint"][0] == "tini"
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert "/api" in " ".join(config["Healthcheck"]["Test"])
    env = dict(e.split("=", 1) for e in config["Env"])
    # the CPU variant asks the NVIDIA runtime for nothing (the GPU target sets these)
    assert "NVIDIA_VISIBLE_DEVICES" not in env and "NVIDIA_DRIVER_CAPABILITIES" not in env
    assert env["PATH"].startswith("/opt/dlenv/env/bin:")
    assert config["WorkingDir"] == "/home/dlenv/work"
    # the wheelhouse was seen by the builder stage only: no torch wheel in the image
    out = docker_client.containers.run(
        cpu_image,
        [
            "bash",
            "-c",
            "ls /opt/dlenv; id -u; stat -c %U /opt/dlenv/env /home/dlenv/work;"
            " python -c 'import torch; print(torch.__version__)'",
        ],
        entrypoint=[],
        remove=True,
    ).decode()
    assert "wheelhouse" not in out
    lines = out.split()
    assert "1000" in lines and lines.count("dlenv") >= 2
    assert "+cpu" in out


def test_rebuild_is_cached(cpu_build, base_image, build_inputs):
    """A second `dlenv build` with the same inputs rebuilds nothing (every step cached)."""
    again = run_dlenv(
        "build", "--cpu", "--tag", CPU_IMAGE, *build_args(base_image, build_inputs), check=True
    )
    assert again.stdout.strip() == CPU_IMAGE
    assert "] COPY stack.sh" in again.stderr  # the plain log names each step
    assert "pytorch: applying" not in again.stderr  # torch was not installed again


# -- docker compose with the CPU override ---------------------------------------------------------
def test_compose_cpu_up_token_health_kernel_smoke_down(
    docker_client, cpu_image, compose_cmd, unique
):
    from dlenv.containers.images import NB_UID

    port = free_port()
    token = uuid.uuid4().hex
    project = f"dlenv-test-{unique}"
    env = {
        **os.environ,
        "DLENV_IMAGE": cpu_image,
        "DLENV_PORT": str(port),
        "JUPYTER_TOKEN": token,
        "DLENV_WORK_VOLUME": f"dlenv-test-work-{unique}",
        # `down -v` removes the packages volume too: never the user's real dlenv-packages
        "DLENV_PACKAGES_VOLUME": f"dlenv-test-work-{unique}-packages",
    }
    cmd = [
        *compose_cmd,
        "-f",
        compose_cmd[-1].replace("compose.yaml", "compose.cpu.yaml"),
        "-p",
        project,
    ]
    up = subprocess.run([*cmd, "up", "-d"], env=env, capture_output=True, text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        containers = docker_client.containers.list(
            filters={"label": f"com.docker.compose.project={project}"}
        )
        assert len(containers) == 1
        container = containers[0]

        wait_for(lambda: api_status(port, token) == 200, 120, "Jupyter to answer with the token")
        assert api_status(port, None) == 403
        assert api_status(port, "wrong-token") == 403
        # published on loopback only
        binding = container.attrs["HostConfig"]["PortBindings"]["8888/tcp"][0]
        assert binding["HostIp"] == "127.0.0.1"

        # non-root, tini as PID 1
        code, out = container.exec_run(["id", "-u"])
        assert code == 0 and out.decode().strip() == str(NB_UID)
        code, out = container.exec_run(["cat", "/proc/1/cmdline"])
        assert out.split(b"\0")[0].endswith(b"tini")
        # the work volume is the user's
        code, out = container.exec_run(["touch", "/home/dlenv/work/probe"])
        assert code == 0, out

        wait_for(lambda: container_health(container) == "healthy", 120, "the healthcheck")

        printed = execute_in_kernel(
            port, token, "import torch, os\nprint(torch.__version__, os.getuid(), 6 * 7)"
        )
        assert "+cpu" in printed and " 1000 42" in printed

        code, out = container.exec_run(
            ["python", "-m", "dlenv_smoke", "--quick", "--device", "cpu", "--json"]
        )
        assert code == 0, out.decode()[-2000:]
        code, out = container.exec_run(["python", "-m", "dlenv_smoke", "--quick", "--json"])
        assert code == 10, out.decode()[-2000:]  # passed, CPU only: the verdict without a GPU
    finally:
        down = subprocess.run(
            [*cmd, "down", "-v"], env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    assert not docker_client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"}
    )
    assert api_status(port, token) == 0


# -- dlenv local ---------------------------------------------------------------------------------
def test_local_up_smoke_status_down(docker_client, cpu_image, isolated_local):
    port = free_port()
    up = local_up(cpu_image, port, isolated_local)
    assert up.returncode == 0, up.stderr
    url = up.stdout.strip().splitlines()[-1]
    assert url.startswith(f"http://127.0.0.1:{port}/lab?token=")
    token = url.split("token=", 1)[1]
    assert api_status(port, token) == 200
    assert api_status(port, None) == 403

    # idempotent: a second `up` keeps the container and prints the same URL
    again = local_up(cpu_image, port, isolated_local)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == url
    assert "already running" in again.stderr

    status = run_dlenv("local", "status", "--json", env=isolated_local)
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["device"] == "cpu" and info["port"] == port and info["status"] == "running"

    smoke = run_dlenv("local", "smoke-test", "--quick", env=isolated_local, timeout=600)
    assert smoke.returncode == 10, smoke.stdout + smoke.stderr  # CPU-only verdict
    assert "Verdict: PASS, CPU only" in smoke.stdout
    as_json = run_dlenv(
        "local", "smoke-test", "--quick", "--cpu", "--json", env=isolated_local, timeout=600
    )
    assert as_json.returncode == 0, as_json.stderr  # --device cpu asked: a plain pass
    assert json.loads(as_json.stdout)

    down = run_dlenv("local", "down", env=isolated_local)
    assert down.returncode == 0, down.stderr
    assert "removed" in down.stderr
    assert not docker_client.containers.list(
        all=True, filters={"name": isolated_local["DLENV_LOCAL_CONTAINER"]}
    )
    assert api_status(port, token) == 0
    # the work volume stays unless --volumes
    assert docker_client.volumes.get(isolated_local["DLENV_WORK_VOLUME"])


def test_local_up_port_in_use_is_one_clear_line(cpu_image, isolated_local):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_dlenv(
            "local", "up", "--cpu", "--image", cpu_image, "--port", str(port), env=isolated_local
        )
    assert proc.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in proc.stderr
    assert "--port" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_local_up_gpu_without_nvidia_runtime(docker_client, cpu_image, isolated_local):
    from dlenv.containers.engine import has_nvidia_runtime

    if has_nvidia_runtime(docker_client.info()):
        pytest.skip("this engine has the NVIDIA runtime")
    proc = local_up(cpu_image, free_port(), isolated_local, device="gpu")
    assert proc.returncode == 1
    assert "NVIDIA" in proc.stderr and "nvidia-container-toolkit" in proc.stderr
    assert "--cpu" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not docker_client.containers.list(
        all=True, filters={"name": isolated_local["DLENV_LOCAL_CONTAINER"]}
    )


def test_smoke_test_without_notebook(isolated_local):
    proc = run_dlenv("local", "smoke-test", env=isolated_local)
    assert proc.returncode == 1
    assert "no local notebook is running" in proc.stderr
    assert "dlenv local up" in proc.stderr


def test_gpu_target_is_the_same_image_plus_nvidia_env(
    docker_client, cpu_image, base_image, build_inputs
):
    """The Dockerfile's `gpu` stage, built from the CPU build's inputs (so every layer is cached):
    the GPU variant differs only by asking the NVIDIA runtime for the GPUs. (Its real build
    swaps in the CUDA torch: multi-GB, never downloaded here.)"""
    from pathlib import Path

    from dlenv.containers import context
    from dlenv.containers.build import _run_build
    from dlenv.provision.manifest import load_stack
    from dlenv.terminal import Terminal

    ca = build_inputs.get("ca_bundle")
    ctx = context.assemble(
        load_stack(),
        "cpu",
        wheelhouse=Path(build_inputs["wheelhouse"]),
        ca_bundle=Path(ca) if ca else None,
    )
    try:  # the same builder backend `dlenv build` used, so its cache applies
        result = _run_build(
            docker_client,
            Terminal(interactive=False),
            ctx.path,
            base_image,
            {},
            "dlenv-test/gpu-target:1",
            False,
            target="gpu",
        )
    finally:
        ctx.cleanup()
    assert result.ok, result.error
    ran = [s for s in result.steps if s.instruction.startswith(("RUN", "COPY"))]
    assert ran and all(s.cached for s in ran), [(s.name, s.cached) for s in ran]
    gpu = docker_client.images.get("dlenv-test/gpu-target:1")
    cpu = docker_client.images.get(cpu_image)
    assert gpu.attrs["RootFS"]["Layers"] == cpu.attrs["RootFS"]["Layers"]
    env = dict(e.split("=", 1) for e in gpu.attrs["Config"]["Env"])
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert gpu.attrs["Config"]["User"] == "dlenv"
    assert gpu.attrs["Config"]["Entrypoint"] == cpu.attrs["Config"]["Entrypoint"]
