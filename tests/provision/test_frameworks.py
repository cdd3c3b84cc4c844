"""More frameworks as their own kernels (`--frameworks tensorflow,jax`), rendered only.

What the `frameworks` step renders for each case (none asked, CPU host, GPU host, --cpu, an
image build), the names it accepts, the Lab's kernel list, the step digest, the settings and the
image build's layer and tag. The real install and kernel run on a host container is
tests/provision/test_frameworks_host.py; the Ansible role's parity is
tests/ansible/test_frameworks_role.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace

import pytest

from dlenv import config
from dlenv.errors import UsageError
from dlenv.provision.manifest import load_stack
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.osinfo import HostFacts, OsInfo
from dlenv.provision.render import render_script
from dlenv.provision.steps import build_steps

STACK = load_stack()
CPU_HOST = HostFacts(os=OsInfo("ubuntu", "24.04"), kernel="6.8.0-1015-aws", user="ubuntu")
GPU_HOST = replace(CPU_HOST, nvidia_pci=("0000:00:1e.0 0302: 10de:1eb8",))


def step(options: ProvisionOptions, facts: HostFacts | None = CPU_HOST):
    stepset = build_steps(STACK, options, facts)
    return {s.name: s for s in stepset.steps}["frameworks"], stepset.context


def allowed(server_config: str) -> list[str]:
    return json.loads(server_config)["KernelSpecManager"]["allowed_kernelspecs"]


def test_the_step_is_listed_but_skipped_when_no_framework_is_asked() -> None:
    fw, ctx = step(ProvisionOptions(python="uv"))
    assert fw.skip_reason == "no --frameworks"
    assert "frameworks/" not in fw.apply and "frameworks/" not in fw.check
    assert allowed(ctx["jupyter_server_config"]) == ["dlenv"]


@pytest.mark.parametrize("python", ["uv", "conda"])
def test_each_framework_gets_its_own_env_kernel_and_verification(python: str) -> None:
    fw, ctx = step(ProvisionOptions(python=python, frameworks=("tensorflow", "jax")))
    assert fw.skip_reason is None
    for name, display in (("tensorflow", "TensorFlow"), ("jax", "JAX")):
        prefix = f"/opt/dlenv/frameworks/{name}"
        assert f"fw={prefix}\n" in fw.apply and f"fw={prefix}\n" in fw.check
        assert f"--name dlenv-{name}" in fw.apply and f"--display-name {display}" in fw.apply
        assert f'"display_name": "{display}"' in fw.check
    # the env of its own: a uv venv or a conda env with the stack's Python, never the main env
    if python == "uv":
        assert 'uv" venv --system-certs --allow-existing --python 3.11' in fw.apply
    else:
        assert '"python=3.11" pip' in fw.apply and 'conda/bin/conda" create' in fw.apply
    assert 'DLENV_ENV="$fw" dlenv_pip' in fw.apply
    # verified by running code in the env's python (no GPU on this host: no device check)
    assert "import jax.numpy as jnp; assert float(jnp.ones(2).sum()) == 2.0" in fw.apply
    assert "import tensorflow as tf; assert int(tf.constant(1) + 1) == 2" in fw.apply
    assert "jax.devices()" not in fw.apply and "list_physical_devices" not in fw.apply
    # Keras 3 inside the TensorFlow kernel runs on TensorFlow (the stack's kernel: torch)
    assert (
        "--name dlenv-tensorflow \\\n  --display-name TensorFlow --env KERAS_BACKEND tensorflow"
        in fw.apply
    )
    # the check reads metadata and files only: nothing imports a framework
    assert "import jax" not in fw.check and "import tensorflow" not in fw.check
    # the Lab offers them: the list the jupyterlab step and this step both write
    assert allowed(ctx["jupyter_server_config"]) == ["dlenv", "dlenv-jax", "dlenv-tensorflow"]
    assert ctx["jupyter_server_config"] in fw.apply and ctx["jupyter_server_config"] in fw.check
    jupyterlab = {
        s.name: s
        for s in build_steps(
            STACK, ProvisionOptions(python=python, frameworks=("jax", "tensorflow")), CPU_HOST
        ).steps
    }["jupyterlab"]
    assert ctx["jupyter_server_config"] in jupyterlab.apply


def test_cpu_builds_on_cpu_hosts_and_gpu_builds_on_gpu_hosts() -> None:
    both = ("tensorflow", "jax")
    cpu, _ = step(ProvisionOptions(frameworks=both), CPU_HOST)
    assert "tensorflow-cpu==2.21.0" in cpu.apply and "jaxlib==0.10.2" in cpu.apply
    assert "and-cuda" not in cpu.apply and "cuda13" not in cpu.apply

    gpu, _ = step(ProvisionOptions(frameworks=both), GPU_HOST)
    assert "'tensorflow[and-cuda]==2.21.0'" in gpu.apply and "'jax[cuda13]==0.10.2'" in gpu.apply
    assert "tensorflow-cpu" not in gpu.apply and "jaxlib==" not in gpu.apply
    # a GPU host: the kernel must see a device, unconditionally
    assert re.search(r"^\"\$fw/bin/python\" -c .*jax\.devices\(\)\[0\]\.platform", gpu.apply, re.M)
    assert re.search(r"^\"\$fw/bin/python\" -c .*list_physical_devices", gpu.apply, re.M)
    assert "nvidia-smi -L" not in gpu.apply
    # the check reads what the GPU build installs (extras dropped) and the record of it
    assert (
        "  tensorflow==2.21.0 \\\n" in gpu.check and "  jax-cuda13-plugin==0.10.2 \\\n" in gpu.check
    )
    assert "= 'tensorflow[and-cuda]==2.21.0' ]" in gpu.check

    forced, _ = step(ProvisionOptions(frameworks=both, cpu=True), GPU_HOST)
    assert "tensorflow-cpu==2.21.0" in forced.apply and "and-cuda" not in forced.apply

    # an image for GPUs (no facts, no --cpu): GPU builds, the device checked only where one runs
    image, _ = step(ProvisionOptions(frameworks=("jax",), profile="container"), None)
    assert "'jax[cuda13]==0.10.2'" in image.apply
    assert (
        'if nvidia-smi -L >/dev/null 2>&1; then\n  "$fw/bin/python" -c \'import jax;' in image.apply
    )


def test_the_same_frameworks_in_any_order_are_the_same_step() -> None:
    a, _ = step(ProvisionOptions(frameworks=("tensorflow", "jax")))
    b, _ = step(ProvisionOptions(frameworks=("jax", "tensorflow", "jax")))
    c, _ = step(ProvisionOptions(frameworks=("jax",)))
    assert a.digest == b.digest != c.digest


def test_unknown_names_are_one_line_listing_the_allowed_ones(tmp_path) -> None:
    with pytest.raises(UsageError) as err:
        ProvisionOptions(frameworks=("jax", "pytorch"))
    assert str(err.value) == "--frameworks: unknown framework 'pytorch'"
    assert "frameworks are: jax, tensorflow" in (err.value.hint or "")
    for argv in (
        ["provision", "--host", "nobody@192.0.2.1", "--frameworks", "tensorflow,mxnet"],
        ["build", "--cpu", "--context", str(tmp_path / "ctx"), "--frameworks", "mxnet"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "dlenv", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "DLENV_STATE_DIR": str(tmp_path / "state")},
        )
        assert proc.returncode == 2, proc.stderr
        assert "unknown framework 'mxnet'" in proc.stderr and "jax, tensorflow" in proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1
    assert not (tmp_path / "ctx").exists()


def test_dlenv_toml_and_the_environment_set_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DLENV_CONFIG_DIR", str(tmp_path / "user"))
    (tmp_path / "user").mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dlenv.toml").write_text('frameworks = ["tensorflow", "jax"]\n')
    # a preference among the stack's own pinned builds: no trust needed
    s = config.load({}, env={})
    assert s.frameworks == ["tensorflow", "jax"] and not s.notices
    assert config.load({}, env={"DLENV_FRAMEWORKS": "jax"}).frameworks == ["jax"]


def test_the_rendered_script_is_valid_bash() -> None:
    script = render_script(
        STACK, ProvisionOptions(python="uv", profile="container", frameworks=("tensorflow", "jax"))
    )
    proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_an_image_build_bakes_them_in_a_layer_of_its_own(tmp_path) -> None:
    from dlenv.containers.build import BuildRequest, image_tags, write_context

    plain_ctx, _ = write_context(BuildRequest(device="cpu"), tmp_path / "plain")
    req = BuildRequest(device="cpu", frameworks=("tensorflow", "jax"))
    ctx, cmd = write_context(req, tmp_path / "ctx")
    layer = (ctx / "frameworks.sh").read_text()
    assert "# ---- step: frameworks" in layer and "tensorflow-cpu==2.21.0" in layer
    assert '"dlenv-jax", "dlenv-tensorflow"' in layer  # the Lab's kernel list, rewritten there
    # the PyTorch layer deleted the wheelhouse: this layer installs from the index instead
    assert '[ -d "$DLENV_WHEELHOUSE" ] || DLENV_WHEELHOUSE=""' in layer
    # the PyTorch layer is byte-identical (cached); without frameworks the layer does nothing
    assert (ctx / "stack.sh").read_text() == (plain_ctx / "stack.sh").read_text()
    assert "/opt/dlenv/frameworks/" not in (plain_ctx / "frameworks.sh").read_text()
    assert "RUN bash /tmp/dlenv/frameworks.sh" in (ctx / "Dockerfile").read_text()
    [tag] = image_tags(STACK.fingerprint, req)
    assert tag == f"dlenv/notebook:{STACK.fingerprint}-cpu-jax-tensorflow"
    assert "io.dlenv.frameworks=jax,tensorflow" in cmd
