"""Engine-free tests of the container plumbing: progress parsing, failures, tags, ports, GPU."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from dlenv.containers import engine, images, notebook
from dlenv.containers.build import _failure, builder_backend
from dlenv.containers.progress import BuildKitProgress, BuildProgress
from dlenv.errors import DockerError, UsageError
from dlenv.terminal import Terminal
from docker_support import REPO, run_dlenv

LEGACY_STREAM = [
    {"stream": "Step 1/4 : ARG BASE_IMAGE=x"},
    {"stream": "\n"},
    {"stream": "Step 2/4 : FROM dlenv-test/base AS system\n"},
    {"stream": " ---> 733ad035ac95\n"},
    {"stream": "Step 3/4 : COPY system.sh /tmp/dlenv/system.sh\n"},
    {"stream": " ---> Using cache\n ---> 11aa\n"},
    {"stream": "Step 4/4 : RUN bash /tmp/dlenv/system.sh\n"},
    {"stream": " ---> Running in 5e5e\n"},
    {"stream": "[dlenv] base-packages: applying\nE: Unable to locate package"},
    {"stream": " pciutils\n[dlenv] base-packages: FAILED (exit 100)\n"},
    {
        "errorDetail": {
            "code": 100,
            "message": "The command '/bin/bash -o pipefail -c bash "
            "/tmp/dlenv/system.sh' returned a non-zero code: 100",
        },
        "error": "The command ... returned a non-zero code: 100",
    },
]


def feed(events, interactive=False):
    progress = BuildProgress(Terminal(interactive=interactive))
    for event in events:
        progress.feed(event)
    return progress.close()


def test_progress_folds_steps_and_keeps_failing_lines(capsys):
    result = feed(LEGACY_STREAM)
    assert not result.ok
    assert [s.number for s in result.steps] == [1, 2, 3, 4]
    assert result.steps[2].cached and not result.steps[3].cached
    step = result.failed_step
    assert step is not None and step.number == 4
    assert list(step.lines)[-2:] == [
        "E: Unable to locate package pciutils",
        "[dlenv] base-packages: FAILED (exit 100)",
    ]
    err = capsys.readouterr().err
    assert "[4/4] RUN bash /tmp/dlenv/system.sh" in err  # plain log when not a terminal
    assert "Running in" not in err


def test_failure_names_docker_step_and_provision_step(capsys):
    result = feed(LEGACY_STREAM)
    error = _failure(result, "dlenv-test/base", Terminal(interactive=False))
    assert isinstance(error, DockerError)
    assert error.message.startswith("build failed at step 4/4 (RUN bash /tmp/dlenv/system.sh)")
    assert "provision step base-packages" in error.message
    assert error.message.endswith("exit code 100")
    assert "\n" not in error.message
    assert "Unable to locate package pciutils" in capsys.readouterr().err


BUILDKIT_PLAIN = """\
#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 4.1kB done
#1 DONE 0.0s
#4 [system 1/3] FROM docker.io/dlenv-test/base
#4 DONE 0.0s
#6 [system 2/3] COPY system.sh /tmp/dlenv/system.sh
#6 CACHED
#7 [system 3/3] RUN set -eu; bash /tmp/dlenv/system.sh
#7 0.170 [dlenv] ca-bundle: skipped (not in --only)
#7 0.171 [dlenv] base-packages: applying
#7 3.52 E: Unable to locate package pciutils
#7 3.53 [dlenv] base-packages: FAILED (exit 100)
#7 ERROR: executor failed running [/bin/bash -o pipefail -c set -eu; bash /tmp/dlenv/system.sh]: exit code: 100
------
 > [system 3/3] RUN set -eu; bash /tmp/dlenv/system.sh:
------
ERROR: failed to solve: executor failed running [/bin/bash -o pipefail -c set -eu]: exit code: 100
"""


def test_buildkit_plain_progress_and_failure(capsys):
    progress = BuildKitProgress(Terminal(interactive=False))
    for line in BUILDKIT_PLAIN.splitlines():
        progress.feed_line(line)
    result = progress.close()
    assert not result.ok
    names = [s.name for s in result.steps]
    assert names == ["internal", "system 1/3", "system 2/3", "system 3/3"]
    assert result.steps[2].cached and not result.steps[3].cached
    assert result.failed_step is result.steps[3]
    err = capsys.readouterr().err
    assert "[system 3/3] RUN set -eu; bash /tmp/dlenv/system.sh" in err
    assert "load build definition" not in err  # BuildKit's bookkeeping stays out of the log
    error = _failure(result, "dlenv-test/base", Terminal(interactive=False))
    assert error.message == (
        "build failed at step system 3/3 (RUN set -eu; bash "
        "/tmp/dlenv/system.sh), provision step base-packages: exit code 100"
    )


def test_buildkit_base_image_failure():
    progress = BuildKitProgress(Terminal(interactive=False))
    for line in [
        "#3 [internal] load metadata for docker.io/nosuch/base:1",
        '#3 ERROR: failed to do request: Head "https://example.invalid/v2/": dial tcp: '
        "lookup example.invalid: no such host",
        "ERROR: failed to solve: nosuch/base:1: failed to do request",
    ]:
        progress.feed_line(line)
    error = _failure(progress.close(), "nosuch/base:1", Terminal(interactive=False))
    assert error.message.startswith("base image nosuch/base:1 is not on this machine")


def test_builder_backend_can_be_forced(monkeypatch):
    monkeypatch.setenv("DLENV_BUILDER", "legacy")
    assert builder_backend() == "legacy"
    monkeypatch.setenv("DLENV_BUILDER", "buildkit")
    assert builder_backend() == "buildkit"


def test_failure_at_from_is_a_base_image_error():
    result = feed(
        [
            {"stream": "Step 1/3 : ARG BASE_IMAGE=x\n"},
            {"stream": "Step 2/3 : FROM nosuch/base:1\n"},
            {"error": "pull access denied for nosuch/base, repository does not exist"},
        ]
    )
    error = _failure(result, "nosuch/base:1", Terminal(interactive=False))
    assert error.message.startswith("base image nosuch/base:1 is not on this machine")
    assert "--base-image" in error.hint


def test_interactive_progress_runs_without_a_tty():
    result = feed([*LEGACY_STREAM[:6], {"aux": {"ID": "sha256:abc"}}], interactive=True)
    assert result.ok and result.image_id == "sha256:abc"


def test_tags_and_devel_base_follow_the_manifest():
    from dlenv.provision.manifest import load_stack

    stack = load_stack()
    assert images.tags_for("abc123", "cpu") == [
        "dlenv/notebook:abc123-cpu",
        "dlenv/notebook:latest-cpu",
    ]
    assert images.tags_for("abc123", "gpu", devel=True)[0] == "dlenv/notebook:abc123-gpu-devel"
    assert images.default_tag("gpu", stack=stack) == f"dlenv/notebook:{stack.fingerprint}-gpu"
    # the devel base's CUDA must be the manifest's (bump both together)
    cuda = str(stack.get("cuda.version"))
    assert f"nvidia/cuda:{cuda}." in images.DEVEL_BASE_IMAGE
    assert "@sha256:" in images.DEVEL_BASE_IMAGE and "@sha256:" in images.DEFAULT_BASE_IMAGE
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={images.DEFAULT_BASE_IMAGE}" in dockerfile
    labels = images.labels_for(stack, "gpu", False, images.DEFAULT_BASE_IMAGE)
    assert labels["io.dlenv.stack.fingerprint"] == stack.fingerprint
    assert labels["io.dlenv.stack.torch-variant"] == stack.get("torch.cuda_variant")
    assert labels["io.dlenv.stack.cuda"] == cuda
    with pytest.raises(ValueError):
        images.variant("tpu")


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"Runtimes": {"runc": {}, "io.containerd.runc.v2": {}}}, False),
        ({"Runtimes": {"runc": {}, "nvidia": {"path": "nvidia-container-runtime"}}}, True),
        ({"Runtimes": {"runc": {}}, "DefaultRuntime": "nvidia"}, True),
        (
            {"Runtimes": {}, "DiscoveredDevices": [{"Source": "cdi", "ID": "nvidia.com/gpu=all"}]},
            True,
        ),
        ({}, False),
    ],
)
def test_gpu_detection_from_docker_info(info, expected):
    assert engine.has_nvidia_runtime(info) is expected


def test_device_choice(capsys):
    term = Terminal(interactive=False)
    assert notebook._choose_device(None, {"Runtimes": {"runc": {}}}, term) == "cpu"
    assert "no NVIDIA runtime" in capsys.readouterr().err
    assert notebook._choose_device(None, {"Runtimes": {"nvidia": {}}}, term) == "gpu"
    assert notebook._choose_device("gpu", {"Runtimes": {}}, term) == "gpu"


def test_port_choice(capsys, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    term = Terminal(interactive=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UsageError) as exc:
            notebook._choose_port(port, term)
        assert f"port {port} on 127.0.0.1 is already in use" in exc.value.message
        assert "--port" in exc.value.hint
        monkeypatch.setattr(notebook, "DEFAULT_PORT", port)
        chosen = notebook._choose_port(None, term)
    assert chosen != port and chosen > port
    assert f"port {port} is in use: using {chosen} instead" in capsys.readouterr().err
    with pytest.raises(UsageError):
        notebook._choose_port(70000, term)


def test_no_engine_is_one_clear_line(tmp_path):
    proc = run_dlenv("build", "--cpu", env={"DOCKER_HOST": f"unix://{tmp_path}/nope.sock"})
    assert proc.returncode == 1
    assert "cannot reach the Docker engine" in proc.stderr
    assert "scripts/ensure-docker" in proc.stderr and "systemctl start docker" in proc.stderr
    assert "Traceback" not in proc.stderr
    local = run_dlenv("local", "up", env={"DOCKER_HOST": f"unix://{tmp_path}/nope.sock"})
    assert local.returncode == 1 and "cannot reach the Docker engine" in local.stderr


def test_bad_build_input_fails_before_the_engine(tmp_path):
    no_engine = {"DOCKER_HOST": f"unix://{tmp_path}/nope.sock"}
    proc = run_dlenv("build", "--cpu", "--devel", env=no_engine)
    assert proc.returncode == 2
    assert "--devel is a GPU image" in proc.stderr
    proc = run_dlenv("build", "--cpu", "--tag", "Bad:Tag:1", env=no_engine)
    assert proc.returncode == 2
    assert "is not a valid image reference" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run_dlenv("build", "--cpu", "--wheelhouse", str(tmp_path / "empty"), env=no_engine)
    assert proc.returncode == 2
    assert "holds no wheels" in proc.stderr
    (tmp_path / "ca.pem").write_text("not a certificate")
    proc = run_dlenv("build", "--cpu", "--ca-bundle", str(tmp_path / "ca.pem"), env=no_engine)
    assert proc.returncode == 2
    assert "holds no PEM certificate" in proc.stderr


def test_help_does_not_import_the_docker_sdk():
    code = (
        "import sys\nfrom dlenv.cli import main\n"
        "try:\n    main(['local', '--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['build', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('DOCKER' if 'docker' in sys.modules else 'CLEAN', file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().endswith("CLEAN")
    assert "dlenv local up" in proc.stdout and "--wheelhouse" in proc.stdout


def test_context_option_writes_a_buildable_context(tmp_path):
    """`dlenv build --context DIR` needs no engine; the printed command names target, base, tags."""
    import shlex

    from dlenv.provision.manifest import load_stack

    no_engine = {"DOCKER_HOST": f"unix://{tmp_path}/nope.sock"}
    out = tmp_path / "ctx"
    proc = run_dlenv("build", "--context", str(out), "--base-image", "my/base:1", env=no_engine)
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout.strip())
    fp = load_stack().fingerprint
    assert cmd[:4] == ["docker", "build", "--target", "gpu"]
    assert "BASE_IMAGE=my/base:1" in cmd and f"dlenv/notebook:{fp}-gpu" in cmd
    assert f"io.dlenv.stack.fingerprint={fp}" in cmd and cmd[-1] == str(out)
    assert {p.name for p in out.iterdir()} >= {"Dockerfile", "system.sh", "stack.sh", "smoke.sh"}
    again = run_dlenv("build", "--context", str(out), env=no_engine)
    assert again.returncode == 2 and "is not empty" in again.stderr
