"""One Lab everywhere: the notebook image's JupyterLab and a provisioned SSH host's service.

Both servers run for real, side by side: the CPU image (`dlenv build --cpu`, the session's image)
in a container, and `dlenv-jupyter` on a "fresh VM" host container provisioned over real SSH by
the runner (uv + the on-disk CPU torch wheel), reached through an SSH tunnel as `dlenv jupyter`
reaches it. They must offer the same kernels (only the stack's, the default, with Keras on torch),
the same notification settings (no news, no update check, no question about them), and in a real
kernel the scientific set must import and Keras must run on torch, with no TensorFlow.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from docker_support import wait_for
from harness.ports import free_port
from jupyter_ws import Kernel, text_of

pytestmark = [pytest.mark.docker, pytest.mark.hosts, pytest.mark.slow]

NOTIFICATION = "/lab/api/settings/@jupyterlab/apputils-extension:notification"
# What a data scientist's first cells import; Keras must answer "torch" with no TensorFlow.
SCIENTIFIC_CELL = """
import os, importlib.util
import pandas, matplotlib, sklearn, scipy, tqdm, ipywidgets, keras, torch
import numpy as np
matplotlib.use("Agg")
import matplotlib.pyplot as plt
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
hist = model.fit(np.random.rand(32, 4), np.random.randint(0, 3, 32), epochs=2, verbose=0)
df = pandas.DataFrame({"x": np.arange(5)})
fig = df.plot().get_figure()
print("backend", keras.backend.backend())
print("env", os.environ.get("KERAS_BACKEND"))
print("torch", torch.__version__)
print("tensorflow", importlib.util.find_spec("tensorflow") is not None)
print("losses", len(hist.history["loss"]))
print("ipywidgets", ipywidgets.__version__.split(".")[0])
print("cwd", os.getcwd())
"""


@dataclass
class Lab:
    """A running JupyterLab: where to reach it from here, its token, its notebook user's home."""

    name: str
    base_url: str
    token: str
    home: str

    def get(self, path: str) -> requests.Response:
        r = requests.get(
            self.base_url + path, headers={"Authorization": f"token {self.token}"}, timeout=30
        )
        r.raise_for_status()
        return r

    def kernelspecs(self) -> dict[str, object]:
        specs = self.get("/api/kernelspecs").json()
        return {
            "default": specs["default"],
            "kernels": {
                name: (s["spec"]["display_name"], s["spec"].get("env", {}))
                for name, s in specs["kernelspecs"].items()
            },
        }

    def notification_defaults(self) -> dict[str, object]:
        """The settings' values as the Lab starts with them (overrides.json sets the defaults)."""
        props = self.get(NOTIFICATION).json()["schema"]["properties"]
        return {key: props[key]["default"] for key in ("fetchNews", "checkForUpdates")}

    def run(self, code: str) -> dict[str, str]:
        """Run `code` as a new notebook in the Lab's root would: a session, the default kernel."""
        auth = {"Authorization": f"token {self.token}"}
        r = requests.post(
            f"{self.base_url}/api/sessions",
            json={"path": "one-lab-check.ipynb", "name": "one-lab-check.ipynb", "type": "notebook"},
            headers=auth,
            timeout=60,
        )
        r.raise_for_status()
        session = r.json()
        try:
            kernel = Kernel(self.base_url, self.token, session["kernel"]["id"])
            outputs = kernel.execute(code, timeout=180)
        finally:
            requests.delete(
                f"{self.base_url}/api/sessions/{session['id']}", headers=auth, timeout=30
            )
        text = text_of_outputs(outputs)
        return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


def text_of_outputs(outputs: list[dict]) -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("", outputs=outputs))
    return text_of(nb)


def _answers(base_url: str) -> bool:
    try:
        return requests.get(base_url + "/api", timeout=3).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture(scope="module")
def docker_lab(docker_client, cpu_image) -> Iterator[Lab]:
    """The CPU image as `dlenv local up` runs it: port published on 127.0.0.1, token given."""
    port, token = free_port(), secrets.token_hex(24)
    container = docker_client.containers.run(
        cpu_image,
        detach=True,
        auto_remove=False,
        environment={"JUPYTER_TOKEN": token},
        ports={"8888/tcp": ("127.0.0.1", port)},
        name=f"dlenv-test-onelab-{secrets.token_hex(4)}",
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(base), 120, "the image's JupyterLab")
        yield Lab("docker", base, token, "/home/dlenv")
    finally:
        container.remove(force=True)


@pytest.fixture(scope="module")
def ssh_lab(provisioned_image, tmp_path_factory) -> Iterator[Lab]:
    """A host provisioned by the runner (a container of the provisioned image: what is compared
    here is the Lab, not provisioning), its service reached through an SSH tunnel."""
    from dlenv.provision.jupyter import fetch_token
    from dlenv.ssh.session import SshHost
    from harness.provisioned import start_provisioned_host

    host = start_provisioned_host(provisioned_image, work=tmp_path_factory.mktemp("onelab-host"))
    try:
        local_port = free_port()
        with SshHost(host.target()) as ssh:
            token = fetch_token(ssh)
            home = ssh.run("printf %s ~").output.strip()
            with ssh.forward_local(local_port, 8888):
                base = f"http://127.0.0.1:{local_port}"
                wait_for(lambda: _answers(base), 60, "the host's JupyterLab")
                yield Lab("ssh", base, token, home)
    finally:
        if os.environ.get("DLENV_TEST_KEEP_HOSTS") != "1":
            host.stop()


@pytest.fixture(scope="module")
def labs(docker_lab: Lab, ssh_lab: Lab) -> dict[str, Lab]:
    return {"docker": docker_lab, "ssh": ssh_lab}


def test_both_labs_offer_only_the_stacks_kernel_with_keras_on_torch(labs) -> None:
    from dlenv.provision.manifest import load_stack

    jupyter = load_stack().data["jupyter"]
    seen = {name: lab.kernelspecs() for name, lab in labs.items()}
    assert seen["docker"] == seen["ssh"], seen
    assert seen["ssh"] == {
        "default": jupyter["kernel_name"],
        "kernels": {
            jupyter["kernel_name"]: (jupyter["kernel_display_name"], {"KERAS_BACKEND": "torch"})
        },
    }, seen


def test_both_labs_never_ask_about_or_fetch_news_and_updates(labs) -> None:
    seen = {name: lab.notification_defaults() for name, lab in labs.items()}
    assert seen["docker"] == seen["ssh"] == {"fetchNews": "false", "checkForUpdates": False}
    for lab in labs.values():
        # the server side too: no news feed, no update check (LabApp.news_url / the check class)
        assert lab.get("/lab/api/news").json() == {"news": []}, lab.name
        assert lab.get("/lab/api/update").json() == {"notification": None}, lab.name


def test_both_labs_load_the_widget_manager(labs) -> None:
    """ipywidgets 8's prebuilt Lab extension is found (widgets render; no Lab build needed)."""
    for lab in labs.values():
        assert "@jupyter-widgets/jupyterlab-manager" in lab.get("/lab").text, lab.name


@pytest.mark.parametrize("name", ["docker", "ssh"])
def test_scientific_set_and_keras_on_torch_in_a_real_kernel(labs, name: str) -> None:
    lab = labs[name]
    out = lab.run(SCIENTIFIC_CELL)
    assert out["backend"] == "torch" and out["env"] == "torch", out
    assert out["torch"] == "2.13.0+cpu", out  # nothing replaced the CPU torch
    assert out["tensorflow"] == "False", out
    assert out["losses"] == "2" and out["ipywidgets"] == "8", out
    # the Lab's root, and so a new notebook's working directory, is the user's work directory
    assert out["cwd"] == f"{lab.home}/work", out
