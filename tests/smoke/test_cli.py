"""`dlenv smoke-test` through the real console entry point, in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from dlenv.ops import smoke
from smoke.smokejob import SRC, clean_env


def _dlenv(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dlenv", *args],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.slow
def test_local_cpu_run_streams_json_and_exit_code():
    proc = _dlenv("smoke-test", "--local", "--device", "cpu", "--quick", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "cpu-only" and report["train"]["passed"]


@pytest.mark.slow
def test_local_exit_code_follows_a_failed_verdict():
    proc = _dlenv("smoke-test", "--local", "--device", "cpu", env={"DLENV_SMOKE_SABOTAGE": "lr0"})
    assert proc.returncode == 1, proc.stderr
    assert "FAIL: training:" in proc.stdout


def test_local_with_missing_python_is_a_usage_error():
    proc = _dlenv("smoke-test", "--local", "--python", "/nonexistent/python")
    assert proc.returncode == 2
    assert "--python /nonexistent/python" in proc.stderr


def _python_without_torch() -> str | None:
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and os.path.exists(candidate):
            probe = subprocess.run([candidate, "-c", "import torch"], capture_output=True)
            if probe.returncode != 0:
                return candidate
    return None


def test_local_with_another_python_runs_the_job_there():
    """--python runs this dlenv's job with another interpreter (dlenv not installed there);
    one without torch is diagnosed, not a traceback."""
    python = _python_without_torch()
    if python is None:
        pytest.skip("no interpreter without torch on this machine")
    proc = _dlenv("smoke-test", "--local", "--python", python, "--json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "fail"
    assert "torch_missing" in {d["code"] for d in report["diagnosis"]}


def test_remote_form_reports_an_unreachable_host_in_one_line():
    """`--host` runs the job over ssh; a refused port is a clear error, not a traceback.

    The successful remote run is covered by the end-to-end test on a real host container."""
    proc = _dlenv("smoke-test", "--host", "ubuntu@127.0.0.1:9")
    assert proc.returncode == 1, proc.stderr
    assert "cannot reach 127.0.0.1:9 over SSH" in proc.stderr and "Traceback" not in proc.stderr


def test_where_is_required_and_unique():
    assert _dlenv("smoke-test").returncode == 2
    proc = _dlenv("smoke-test", "mybox", "--local")
    assert proc.returncode == 2 and "give only one" in proc.stderr


def test_smoke_test_module_imports_only_click():
    code = (
        "import sys; import dlenv.cli.smoke_test; "
        "bad = [m for m in ('torch', 'dlenv_smoke', 'boto3', 'paramiko', 'fabric') "
        "if m in sys.modules]; print(bad)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=True,
    )
    assert proc.stdout.strip() == "[]"


def test_job_args_and_commands():
    args = smoke.job_args(as_json=True, quick=False, device="cuda", expect_gpus=8)
    assert args == ["--full", "--device", "cuda", "--expect-gpus", "8", "--json"]
    argv, env = smoke.local_command(["--quick"])
    assert argv[:3] == [sys.executable, "-m", "dlenv_smoke"]
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(smoke.package_dir())
    assert (smoke.package_dir() / "dlenv_smoke" / "__main__.py").is_file()
    files = dict((rel, path) for path, rel in smoke.package_files())
    assert "dlenv_smoke/__main__.py" in files and "dlenv_smoke/diagnose.py" in files
