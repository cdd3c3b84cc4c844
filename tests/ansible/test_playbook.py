"""ansible/site.yml on real "fresh VM" hosts (systemd + sshd containers), over real SSH.

One story, in order, on three fresh hosts:
  A  uv + the wheelhouse, the whole playbook (CPU: no GPU here);
  C  conda (the stand-in installer of tests/provision/test_conda.py, given as a local file, with
     a manifest whose sha256 is that file's) + the wheelhouse, roles base-packages..pytorch;
  B  check mode only, then GPU roles on a host whose driver and toolkit are "already installed"
     (stand-in nvidia-smi / nvcc answering with the recorded outputs of tests/provision/data).
Check mode on the fresh hosts changes nothing; a wrong installer checksum is refused; the first
run changes things and passes its own verifications; the second run and check mode report
changed=0; then dlenv itself (`dlenv provision --plan`) finds nothing to do, Jupyter answers and
`dlenv smoke-test` passes. Ansible runs from the repository root with no ansible.cfg.

Conda's full path (jupyterlab, service, idle, smoke through pip) is left to the manual run in
ansible/README.md: pip is ~3x slower than uv here and would double this module's time.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from ansible_support import PlaybookRun, host_entry, playbook, write_inventory

from dlenv.provision.manifest import load_stack, provision_dir
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.runner import provision
from dlenv.terminal import Terminal

pytestmark = [pytest.mark.docker, pytest.mark.hosts, pytest.mark.slow]

CONDA_TAGS = "base-packages,python-env,pytorch"
NO_SMOKE = ("-e", "dlenv_verify_smoke=false")

FAKE_NVIDIA_SMI = r"""#!/bin/bash
# Stand-in for a host whose NVIDIA driver is installed (outside apt, as NVIDIA's runfile does on
# AWS's Deep Learning AMIs) and loaded, one T4. Version from /etc/fake-nvidia-driver-version;
# persistence off until `-pm 1`, as after a boot. Output in nvidia-smi's format
# (tests/provision/data/nvidia-smi).
driver=$(cat /etc/fake-nvidia-driver-version)
state=/var/lib/fake-nvidia/persistence
declare -A v=([name]="Tesla T4" [driver_version]=$driver
              [persistence_mode]=$(cat "$state" 2>/dev/null || echo Disabled)
              [memory.total]="15360 MiB" [utilization.gpu]="0 %")
fields=""; nounits=0
for a in "$@"; do
  case "$a" in
    --query-gpu=*) fields=${a#--query-gpu=} ;;
    --format=*nounits*) nounits=1 ;;
    -L) echo "GPU 0: Tesla T4 (UUID: GPU-5a1b2c3d-0000-0000-0000-000000000000)"; exit 0 ;;
    -pm) mkdir -p "${state%/*}"; echo Enabled > "$state"
         echo "Enabled persistence mode for GPU 00000000:00:1E.0."; exit 0 ;;
  esac
done
if [ -n "$fields" ]; then
  out=""; IFS=, read -ra names <<< "$fields"
  for f in "${names[@]}"; do
    val=${v[$f]:-[N/A]}; [ "$nounits" = 1 ] && val=${val%% *}; out+="${out:+, }$val"
  done
  echo "$out"; exit 0
fi
echo "| NVIDIA-SMI $driver    Driver Version: $driver    CUDA Version: 13.0 |"
"""


def _docker_diff(container: str) -> set[str]:
    out = subprocess.run(
        ["docker", "diff", container], capture_output=True, text=True, check=True
    ).stdout
    return {
        line
        for line in out.splitlines()
        if not re.match(
            r"^[ACD] /(var/log|tmp|run|root/\.cache|var/cache/apt|home/dlenv/\.ansible"
            r"|var/lib/systemd/(linger|timers))(/|$)",
            line,
        )
    }


def _assert_ok(run: PlaybookRun, *hosts: str, changed: bool | None = None) -> None:
    recap = run.recap
    assert run.returncode == 0 and set(hosts) <= set(recap), run.tail()
    for h in hosts:
        assert recap[h]["failed"] == 0 and recap[h]["unreachable"] == 0, run.tail()
        if changed is False:
            assert recap[h]["changed"] == 0, (
                f"{h} reported changes: {run.changed_tasks()}\n{run.tail(60)}"
            )
        elif changed is True:
            assert recap[h]["changed"] > 0, run.tail()


@pytest.fixture(scope="module")
def story(tmp_path_factory, isolated_state, wheelhouse):
    """Three fresh hosts, an inventory for them and the conda stand-in's files."""
    from harness import ensure_images, require_engine, start_host
    from provision.test_conda import INSTALLER  # the truthful stand-in, not a second copy

    require_engine()
    ensure_images()
    work = tmp_path_factory.mktemp("ansible")
    # C keeps its own apt archive: A and C install packages at the same time, and two apt runs
    # cannot share one archive directory (the harness shares it across hosts to save downloads).
    hosts = {name: start_host(work=work, shared_caches=name != "c") for name in ("a", "b", "c")}
    installer = work / "Miniforge3-test-Linux-x86_64.sh"
    installer.write_text(INSTALLER)
    sha = hashlib.sha256(installer.read_bytes()).hexdigest()
    stack = load_stack()
    manifest = (provision_dir() / "stack.toml").read_text()
    pinned = stack.conda_dist("miniforge")["sha256"]
    good, bad = work / "stack-standin.toml", work / "stack-bad-sha.toml"
    good.write_text(manifest.replace(pinned, sha))
    bad.write_text(manifest.replace(pinned, "0" * 64))
    inventory = write_inventory(
        work / "inventory.yml",
        {
            "a": host_entry(
                hosts["a"], dlenv_python_manager="uv", dlenv_wheelhouse=str(wheelhouse)
            ),
            "b": host_entry(hosts["b"], dlenv_python_manager="uv"),
            "c": host_entry(
                hosts["c"],
                dlenv_python_manager="conda",
                dlenv_wheelhouse=str(wheelhouse),
                dlenv_conda_installer=str(installer),
                dlenv_stack_file=str(good),
            ),
        },
    )
    # the CLI checks host keys against its own known_hosts (in the isolated state dir)
    (isolated_state / "known_hosts").write_text(
        "".join(h.known_hosts.read_text() for h in hosts.values())
    )
    yield {
        "hosts": hosts,
        "inventory": inventory,
        "work": work,
        "installer": installer,
        "sha": sha,
        "good": good,
        "bad": bad,
        "wheelhouse": wheelhouse,
    }
    import os

    if os.environ.get("DLENV_TEST_KEEP_HOSTS") != "1":
        for h in hosts.values():
            h.stop()


def _both(story, *args: str) -> tuple[PlaybookRun, PlaybookRun]:
    """A (whole playbook) and C (conda, its tags) at the same time, as two playbook runs."""
    inv = story["inventory"]
    with ThreadPoolExecutor(2) as pool:
        ra = pool.submit(playbook, inv, "--limit", "a", *args)
        rc = pool.submit(playbook, inv, "--limit", "c", "--tags", CONDA_TAGS, *args)
        return ra.result(), rc.result()


def test_check_mode_on_fresh_hosts_changes_nothing(story) -> None:
    hosts = story["hosts"]
    for h in hosts.values():  # a login first, so its own traces (lastlog, wtmp) are not counted
        h.exec("true")
    subprocess.run(
        ["ssh", "-i", str(hosts["a"].key), "-p", str(hosts["a"].port), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={hosts['a'].known_hosts}", "dlenv@127.0.0.1", "true"],
        capture_output=True, check=False,
    )  # fmt: skip
    before = {name: _docker_diff(h.container) for name, h in hosts.items()}
    run = playbook(story["inventory"], "--check")
    _assert_ok(run, "a", "b", "c", changed=True)  # "would change": reported, not done
    assert "no NVIDIA GPU: skipping driver/CUDA" in run.output
    assert "would install torch" in run.output and "would install uv" in run.output
    for name, h in hosts.items():
        assert _docker_diff(h.container) == before[name], f"check mode changed host {name}"
        assert h.exec("test -e /opt/dlenv || test -e /etc/dlenv").returncode == 1
    print(f"\n[figures] check mode on 3 fresh hosts: {run.seconds:.1f}s")


def test_a_conda_installer_with_another_sha256_is_refused(story) -> None:
    run = playbook(
        story["inventory"],
        "--limit",
        "c",
        "--tags",
        "python-env",
        "-e",
        f"dlenv_stack_file={story['bad']}",
    )
    assert run.returncode != 0 and run.recap["c"]["failed"] == 1, run.tail()
    assert f"conda installer checksum mismatch: got {story['sha']}" in run.output, run.tail()
    c = story["hosts"]["c"]
    assert c.exec("test -e /opt/dlenv/conda || test -e /opt/dlenv/installers").returncode == 1


def test_first_run_provisions_and_verifies(story) -> None:
    ra, rc = _both(story)
    _assert_ok(ra, "a", changed=True)
    _assert_ok(rc, "c", changed=True)
    for text in (
        "no NVIDIA GPU: skipping driver/CUDA",
        "torch 2.13.0+cpu imports (CUDA build: None), numpy",
        "JupyterLab 4.6.6, ipykernel 7.4.0, kernel dlenv -> /opt/dlenv/env/bin/python",
        '127.0.0.1:8888 0.0.0.0:* users:((\\"jupyter-lab\\"',
        "busy: ssh command running",
        "Verdict: PASS",
    ):
        assert text in ra.output, f"{text!r} not in A's run:\n{ra.tail()}"
    assert "/opt/dlenv/conda/envs/dlenv: Python 3.11" in rc.output, rc.tail()
    assert "torch 2.13.0+cpu imports" in rc.output, rc.tail()
    print(
        f"\n[figures] first run: A (uv, whole playbook) {ra.seconds:.1f}s, "
        f"C (conda, {CONDA_TAGS}) {rc.seconds:.1f}s, concurrently"
    )


def test_second_run_changes_nothing(story) -> None:
    ra, rc = _both(story, *NO_SMOKE)
    _assert_ok(ra, "a", changed=False)
    _assert_ok(rc, "c", changed=False)
    print(f"\n[figures] no-op re-run: A {ra.seconds:.1f}s, C {rc.seconds:.1f}s")


def test_check_mode_on_provisioned_hosts_reports_no_change(story) -> None:
    ra, rc = _both(story, "--check", *NO_SMOKE)
    _assert_ok(ra, "a", changed=False)
    _assert_ok(rc, "c", changed=False)


def test_dlenv_finds_nothing_to_do_and_the_stack_works(story) -> None:
    from docker_support import run_dlenv

    a, c = story["hosts"]["a"], story["hosts"]["c"]
    flags = ["--python", "uv", "--wheelhouse", str(story["wheelhouse"])]
    proc = run_dlenv(
        "provision", "--host", a.spec, "-i", str(a.key), "--plan", "--json", *flags, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [plan] = json.loads(proc.stdout)
    states = {s["step"]: (s["status"], s["reason"]) for s in plan["plan"]}
    assert states == {
        "base-packages": ("done", ""),
        "nvidia-driver": ("skipped", "no NVIDIA GPU"),
        "cuda-toolkit": ("skipped", "no NVIDIA GPU"),
        "python-env": ("done", ""),
        "pytorch": ("done", ""),
        "jupyterlab": ("done", ""),
        "scientific": ("done", ""),
        "frameworks": ("skipped", "no --frameworks"),
        "jupyterlab-service": ("done", ""),
        "idle-autostop": ("done", ""),
        "smoke-test": ("done", ""),
    }, proc.stdout

    # conda host: the library runner with the same (stand-in) manifest the playbook read
    only = tuple(CONDA_TAGS.split(","))
    options = ProvisionOptions(
        python="conda",
        wheelhouse=story["wheelhouse"],
        conda_installer=story["installer"],
        only=only,
    )
    [res] = provision(
        [c.target()],
        options,
        Terminal(interactive=False),
        plan_only=True,
        stack=load_stack(story["good"]),
    )
    assert res.ok, res.error
    assert {s.name: s.status for s in res.plan if s.name in only} == dict.fromkeys(only, "done")

    # Jupyter answers, with the token only (as dlenv's tunnel would reach it)
    api = a.exec(
        'curl -fsS -H "Authorization: token $(cat /etc/dlenv/jupyter-token)" '
        "http://127.0.0.1:8888/api/kernelspecs"
    )
    assert api.returncode == 0 and json.loads(api.stdout)["default"] == "dlenv", api.stderr
    assert (
        "403"
        in a.exec("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8888/api/kernels").stdout
    )

    # the smoke test as a user runs it after logging in (`dlenv smoke-test --host` runs the same
    # command, but checks host keys against ~/.ssh/known_hosts, which a test must not write)
    smoke = subprocess.run(
        ["ssh", "-i", str(a.key), "-p", str(a.port), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={a.known_hosts}", "-o", "StrictHostKeyChecking=yes",
         "dlenv@127.0.0.1", "dlenv-smoke --quick"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert smoke.returncode == 10, smoke.stdout[-3000:] + smoke.stderr[-3000:]  # CPU-only pass
    assert "Verdict: PASS" in smoke.stdout + smoke.stderr


def test_gpu_roles_on_a_host_with_driver_and_toolkit_installed(story) -> None:
    """No GPU exists here: B gets stand-in nvidia-smi/nvcc (a host like AWS's Deep Learning AMI:
    a runfile driver loaded, CUDA 13.0 at the stack's CUDA home), so the GPU branch of the roles
    runs and decides as dlenv's steps decide: a runfile driver of another branch (550) is refused
    by both; one of the pinned branch (580) is kept and only gets persistence mode turned on; the
    toolkit is kept and gets its PATH snippet from provision/files. The real driver/toolkit
    installation cannot run here (no GPU, no NVIDIA repository)."""
    b = story["hosts"]["b"]
    nvcc = (Path(__file__).parents[1] / "provision" / "data" / "nvcc" / "13.0.txt").read_text()
    subprocess.run(
        ["docker", "exec", "-i", b.container, "bash", "-c",
         "cat > /usr/local/bin/nvidia-smi && chmod 755 /usr/local/bin/nvidia-smi"],
        input=FAKE_NVIDIA_SMI, text=True, check=True,
    )  # fmt: skip
    subprocess.run(
        ["docker", "exec", "-i", b.container, "bash", "-c",
         "mkdir -p /usr/local/cuda-13.0/bin && cat > /usr/local/cuda-13.0/bin/nvcc.txt && "
         "printf '#!/bin/sh\\ncat /usr/local/cuda-13.0/bin/nvcc.txt\\n' > /usr/local/cuda-13.0/bin/nvcc && "
         "chmod 755 /usr/local/cuda-13.0/bin/nvcc"],
        input=nvcc, text=True, check=True,
    )  # fmt: skip
    only = ("nvidia-driver", "cuda-toolkit")

    def dlenv(plan_only: bool = True):
        [res] = provision(
            [b.target()],
            ProvisionOptions(python="uv", only=only),
            Terminal(interactive=False),
            plan_only=plan_only,
        )
        return res

    def gpu_playbook(*args: str) -> PlaybookRun:
        return playbook(story["inventory"], "--limit", "b", "--tags", "gpu", *args)

    # a runfile driver of branch 550: both refuse to install packages over it
    b.exec("echo 550.54.15 > /etc/fake-nvidia-driver-version", check=True)
    refused = gpu_playbook("--check")
    assert refused.returncode != 0 and refused.recap["b"]["failed"] == 1, refused.tail()
    assert "NVIDIA driver 550.54.15 was installed outside apt" in refused.output, refused.tail()
    assert "no NVIDIA GPU" not in refused.output
    res = dlenv(plan_only=False)
    assert not res.ok and "NVIDIA driver 550.54.15 was installed outside apt" in res.error.message

    # branch 580, persistence off (as after a boot): kept, persistence turned on
    b.exec("echo 580.95.05 > /etc/fake-nvidia-driver-version", check=True)
    check = gpu_playbook("--check")
    _assert_ok(check, "b")
    assert "would turn persistence mode on (driver 580.95.05)" in check.output, check.tail()
    assert check.changed_tasks() == [
        "nvidia_driver : Say what a real run would do",
        "cuda : Put nvcc on PATH for login shells",
    ]
    assert {s.name: s.status for s in dlenv().plan if s.name in only} == dict.fromkeys(
        only, "pending"
    )
    first = gpu_playbook()
    _assert_ok(first, "b")
    assert first.changed_tasks() == [
        # a runfile driver has no nvidia-persistenced unit: dlenv's own one, so that persistence
        # comes back at every boot (issue 17 item 5)
        "nvidia_driver : Install dlenv's persistence unit (no nvidia-persistenced unit)",
        "nvidia_driver : Turn persistence mode on (no nvidia-persistenced unit)",
        "cuda : Put nvcc on PATH for login shells",
    ]
    assert "Tesla T4, 580.95.05, Enabled, 15360 MiB" in first.output
    assert "Cuda compilation tools, release 13.0, V13.0.88" in first.output
    _assert_ok(gpu_playbook(), "b", changed=False)
    assert {s.name: s.status for s in dlenv().plan if s.name in only} == dict.fromkeys(only, "done")
