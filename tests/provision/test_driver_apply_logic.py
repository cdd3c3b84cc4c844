"""The nvidia-driver step's apply, run for real in bash against stub system commands (issue 17).

The rendered apply (for a host's facts, as the SSH runner renders it, or without facts, as the
Dockerfile and Packer do) runs under `bash -eo pipefail` like the runner runs it. `apt-get`,
`apt-cache`, `dpkg-query`, `nvidia-smi`, `systemctl`, `uname` ... are stubs on PATH that keep a
tiny package/unit state in a directory and log every call, so each test asserts what the step
asked the system to do, in which order. Nothing outside the test's tmp directory is touched:
the few absolute paths the apply writes (/etc/modprobe.d, /etc/systemd/system) are redirected.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlenv.provision.manifest import load_stack
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.osinfo import HostFacts
from dlenv.provision.steps import build_steps
from harness.recorded import DATA, facts_for

# Stub commands. $S is the state directory: $S/pkg/<name> = installed (content: version),
# $S/missing = packages the archive does not offer, $S/enabled/<unit> = enabled units.
STUBS = {
    "apt-get": r"""
echo "apt-get $*" >> "$S/log"
[ "$1" = update ] && exit 0
downgrade=0; for a in "$@"; do [ "$a" = --allow-downgrades ] && downgrade=1; done
seen=0
for a in "$@"; do
  [ "$a" = install ] && { seen=1; continue; }
  [ $seen = 1 ] || continue
  case "$a" in -o) skip=1; continue ;; -*) continue ;; esac
  [ "${skip:-0}" = 1 ] && { skip=0; continue; }
  if grep -qx "$a" "$S/missing" 2>/dev/null; then echo "E: Unable to locate package $a" >&2; exit 100; fi
  if [ -e "$S/pkg/$a" ] && [ $downgrade = 0 ]; then continue; fi
  if [ "$a" = nvidia-open ] && [ -e "$S/stuck" ]; then continue; fi
  echo "580.95.05-1" > "$S/pkg/$a"
done
""",
    "apt-cache": r"""
echo "apt-cache $*" >> "$S/log"
pkg="${@: -1}"
grep -qx "$pkg" "$S/missing" 2>/dev/null && { echo "E: No packages found" >&2; exit 100; }
echo "Package: $pkg"
""",
    "dpkg-query": r"""
fmt=""; rc=0
for a in "$@"; do
  case "$a" in -W) ;; -f=*) fmt="${a#-f=}" ;; -f) ;; *)
    if [ -z "$fmt" ]; then fmt="$a"; continue; fi
    if [ -e "$S/pkg/$a" ]; then
      v=$(cat "$S/pkg/$a")
      case "$fmt" in
        *'${Package}'*) echo "$a install ok installed" ;;
        *'${Version}'*) echo "install ok installed $v" ;;
        *) printf 'install ok installed' ;;
      esac
    else
      echo "dpkg-query: no packages found matching $a" >&2; rc=1
    fi ;;
  esac
done
exit $rc
""",
    "dpkg": 'echo "dpkg $*" >> "$S/log"; exit 0\n',
    "apt-mark": 'echo "apt-mark $*" >> "$S/log"\n',
    "uname": r"""
case "$1" in -r) echo "$KERNEL" ;; -rm) echo "$KERNEL x86_64" ;; *) echo Linux ;; esac
""",
    "nvidia-smi": r"""
echo "nvidia-smi $*" >> "$S/log"
if [ -e "$S/pkg/nvidia-open" ]; then v=$(cut -d- -f1 "$S/pkg/nvidia-open")
elif [ -e "$S/pkg/nvidia-utils-580-server" ]; then v=580.95.05
else echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." ; exit 9; fi
case "$*" in
  *driver_version*) for i in $(seq "${GPUS:-1}"); do echo "$v"; done ;;
  -q) if [ -e "$S/enabled/nvidia-fabricmanager" ]; then
        for i in $(seq "${GPUS:-1}"); do cat "$DATA/nvidia-smi/q-fabric-completed.txt"; done
      else
        for i in $(seq "${GPUS:-1}"); do printf '    Fabric\n        State                             : In Progress\n        Status                            : N/A\n'; done
      fi ;;
  "-pm 1") echo "Enabled persistence mode" ;;
  "") echo "| NVIDIA-SMI $v    Driver Version: $v    CUDA Version: 13.0 |" ;;
  *) echo "nvidia-smi stub: unexpected $*" >&2; exit 2 ;;
esac
""",
    "systemctl": r"""
echo "systemctl $*" >> "$S/log"
unit_exists() {
  case "$1" in
    nvidia-persistenced) [ -e "$S/pkg/nvidia-compute-utils-580-server" ] || [ -e "$S/pkg/nvidia-persistenced" ] ;;
    nvidia-fabricmanager) [ -e "$S/pkg/nvidia-fabricmanager-580" ] ;;
    *) [ -e "$ROOT/etc/systemd/system/$1.service" ] ;;
  esac
}
case "$1" in
  enable) u="${@: -1}"; unit_exists "$u" || { echo "Unit $u.service does not exist" >&2; exit 1; }
          touch "$S/enabled/$u" ;;
  is-enabled|is-active) [ -e "$S/enabled/${@: -1}" ] ;;
  list-unit-files) u="${3%.service}"; unit_exists "$u" && echo "$u.service enabled enabled" || true ;;
  *) exit 0 ;;
esac
""",
    "lsmod": "exit 0\n",
    "modprobe": 'echo "modprobe $*" >> "$S/log"\n',
    "update-initramfs": "exit 0\n",
    "sleep": 'echo "sleep $*" >> "$S/log"\n',
}

# Functions of the prelude that reach outside the test (network, /run): replaced after it.
OVERRIDES = r"""
dlenv_wait_for_apt() { :; }
dlenv_cuda_repo() { echo "dlenv_cuda_repo $*" >> "$S/log"; }
dlenv_reboot_required() { echo "REBOOT $*" >> "$S/log"; }
dlenv_has_nvswitch() { [ -n "${NVSWITCH:-}" ]; }
export -f dlenv_wait_for_apt dlenv_cuda_repo dlenv_reboot_required dlenv_has_nvswitch
"""


@dataclass
class Run:
    rc: int
    out: str
    log: list[str]
    state: Path

    def apt_installs(self) -> list[list[str]]:
        """The package arguments of each `apt-get install` call, in order."""
        calls = []
        for line in self.log:
            words = line.split()
            if words[:2] == ["apt-get", "install"]:
                calls.append([w for w in words[2:] if not w.startswith("-") and "::" not in w])
        return calls

    def installed(self) -> set[str]:
        return {p.name for p in (self.state / "pkg").iterdir()}


def _render(facts: HostFacts | None) -> tuple[str, str, str]:
    stepset = build_steps(load_stack(), ProvisionOptions(), facts)
    step = {s.name: s for s in stepset.steps}["nvidia-driver"]
    return stepset.prelude, step.check, step.apply


def _run(
    tmp_path: Path,
    facts: HostFacts | None,
    *,
    kernel: str,
    installed: dict[str, str] | None = None,
    missing: tuple[str, ...] = (),
    nvswitch: bool = False,
    gpus: int = 1,
    stuck: bool = False,
    os_release: str = "ubuntu-24.04",
    body: str = "apply",
) -> Run:
    state, stubs, root = tmp_path / "state", tmp_path / "bin", tmp_path / "root"
    for d in (
        state / "pkg",
        state / "enabled",
        stubs,
        root / "etc/modprobe.d",
        root / "etc/systemd/system",
    ):
        d.mkdir(parents=True, exist_ok=True)
    (state / "log").write_text("")
    (state / "missing").write_text("".join(f"{m}\n" for m in missing))
    for name, version in (installed or {}).items():
        (state / "pkg" / name).write_text(version + "\n")
    if stuck:
        (state / "stuck").write_text("")
    for name, text in STUBS.items():
        (stubs / name).write_text("#!/bin/bash\n" + text)
        (stubs / name).chmod(0o755)
    prelude, check, apply = _render(facts)
    redirect = {
        "/etc/modprobe.d/": f"{root}/etc/modprobe.d/",
        "/etc/systemd/system/": f"{root}/etc/systemd/system/",
        "/tmp/.dlenv-apt-updated": f"{state}/apt-updated",
        ". /etc/os-release": f". {DATA}/os-release/{os_release}.txt",
    }
    text = apply if body == "apply" else check
    for old, new in redirect.items():
        text, prelude = text.replace(old, new), prelude.replace(old, new)
    env_lines = {
        "S": state,
        "ROOT": root,
        "KERNEL": kernel,
        "DATA": DATA,
        "GPUS": gpus,
        "NVSWITCH": "1" if nvswitch else "",
    }
    exports = "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in env_lines.items())
    script = (
        f"{prelude}\n{exports}export PATH={shlex.quote(str(stubs))}:$PATH\n{OVERRIDES}\n"
        f"bash -eo pipefail -c {shlex.quote(text)}\n"
    )
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    log = (state / "log").read_text().splitlines()
    return Run(proc.returncode, proc.stdout + proc.stderr, log, state)


UBUNTU_AWS = ("ubuntu-24.04", "6.8.0-1015-aws")
DEBIAN = ("debian-12", "6.1.0-37-cloud-amd64")


def _facts(os_kernel: tuple[str, str], lspci: str) -> HostFacts:
    return facts_for(os_kernel[0], f"{os_kernel[1]} x86_64", lspci)


# -- item 4: Ubuntu installs the modules of the running kernel too ------------------------------
def test_ubuntu_installs_the_running_kernels_modules_and_persistenced(tmp_path: Path) -> None:
    run = _run(tmp_path, _facts(UBUNTU_AWS, "g4dn-t4"), kernel=UBUNTU_AWS[1])
    assert run.rc == 0, run.out
    [install] = run.apt_installs()
    assert "linux-modules-nvidia-580-server-open-6.8.0-1015-aws" in install  # the running kernel
    assert "linux-modules-nvidia-580-server-open-aws" in install  # the flavour (upgrades)
    # item 5: nvidia-persistenced's package, and its unit enabled (survives reboots)
    assert "nvidia-compute-utils-580-server" in install
    assert "systemctl enable --now nvidia-persistenced" in run.log
    assert not any(line.startswith("REBOOT") for line in run.log), run.log
    # a T4 has no NVSwitch: no Fabric Manager
    assert not any("fabricmanager" in line for line in run.log)


def test_ubuntu_running_kernel_without_modules_in_the_archive_uses_the_flavour(
    tmp_path: Path,
) -> None:
    kernel = "6.8.0-1008-aws"
    run = _run(
        tmp_path,
        facts_for("ubuntu-24.04", f"{kernel} x86_64", "g4dn-t4"),
        kernel=kernel,
        missing=(f"linux-modules-nvidia-580-server-open-{kernel}",),
    )
    assert run.rc == 0, run.out
    [install] = run.apt_installs()
    assert f"linux-modules-nvidia-580-server-open-{kernel}" not in install
    assert "linux-modules-nvidia-580-server-open-aws" in install
    assert "is not in the archive (an older kernel)" in run.out


# -- item 1: Fabric Manager where the GPUs sit behind NVSwitches --------------------------------
@pytest.mark.parametrize("lspci", ["p5-h100-nvswitch", "p4d-a100-nvswitch"])
def test_nvswitch_host_gets_fabric_manager_enabled_and_checked(tmp_path: Path, lspci: str) -> None:
    facts = _facts(UBUNTU_AWS, lspci)
    assert facts.has_nvswitch
    run = _run(tmp_path, facts, kernel=UBUNTU_AWS[1], gpus=8)
    assert run.rc == 0, run.out
    installs = run.apt_installs()
    assert ["nvidia-fabricmanager-580", "libnvidia-nscq-580"] in installs
    assert "systemctl enable --now nvidia-fabricmanager" in run.log
    # the rendered check demands the fabric, and passes on the host the apply left
    _, check, _ = _render(facts)
    assert "dlenv_fabric_ok" in check
    again = _run(tmp_path, facts, kernel=UBUNTU_AWS[1], gpus=8, body="check")
    assert again.rc == 0, again.out
    assert "nvidia-smi -q" in again.log


def test_nvswitch_check_fails_until_the_fabric_is_up(tmp_path: Path) -> None:
    facts = _facts(UBUNTU_AWS, "p5-h100-nvswitch")
    pkgs = {
        p: "580.95.05-1"
        for p in (
            "nvidia-utils-580-server",
            "nvidia-compute-utils-580-server",
            "nvidia-fabricmanager-580",
        )
    }
    # driver and persistence fine, Fabric Manager never enabled: State "In Progress" -> not done
    state = tmp_path / "a"
    run = _run(state, facts, kernel=UBUNTU_AWS[1], installed=pkgs, body="check", gpus=8)
    assert run.rc == 1
    (state / "state" / "enabled" / "nvidia-persistenced").touch()
    (state / "state" / "enabled" / "nvidia-fabricmanager").touch()  # fabric: Completed/Success
    assert _run(state, facts, kernel=UBUNTU_AWS[1], body="check", gpus=8).rc == 0
    # the same host without NVSwitches in its facts would not have looked at the fabric
    assert "dlenv_fabric_ok" not in _render(_facts(UBUNTU_AWS, "g4dn-t4"))[1]


def test_a_kept_driver_on_an_nvswitch_host_gets_fabric_manager_too(tmp_path: Path) -> None:
    """A driver of the branch already loaded (an image): persistence and Fabric Manager only."""
    facts = _facts(UBUNTU_AWS, "p5-h100-nvswitch")
    run = _run(
        tmp_path,
        facts,
        kernel=UBUNTU_AWS[1],
        gpus=8,
        installed={
            "nvidia-utils-580-server": "580.95.05-1",
            "nvidia-compute-utils-580-server": "580.95.05-1",
        },
    )
    assert run.rc == 0, run.out
    assert "already installed and loaded: keeping it" in run.out
    assert run.apt_installs() == [["nvidia-fabricmanager-580", "libnvidia-nscq-580"]]
    assert "systemctl enable --now nvidia-fabricmanager" in run.log


@pytest.mark.parametrize("nvswitch", [True, False])
def test_without_facts_the_host_decides_at_run_time(tmp_path: Path, nvswitch: bool) -> None:
    """Dockerfile/Packer render without facts: the NVSwitch test runs on the host."""
    run = _run(tmp_path, None, kernel=UBUNTU_AWS[1], nvswitch=nvswitch)
    assert run.rc == 0, run.out
    fm = ["nvidia-fabricmanager-580", "libnvidia-nscq-580"]
    assert (fm in run.apt_installs()) is nvswitch
    [first, *_] = run.apt_installs()
    assert "linux-modules-nvidia-580-server-open-6.8.0-1015-aws" in first


# -- item 2: Debian 12 installs the branch pin in its own apt call, first -----------------------
def test_debian_pins_the_branch_in_its_own_apt_call_before_the_driver(tmp_path: Path) -> None:
    run = _run(tmp_path, _facts(DEBIAN, "g4dn-t4"), kernel=DEBIAN[1], os_release="debian-12")
    assert run.rc == 0, run.out
    assert run.apt_installs() == [
        ["linux-headers-6.1.0-37-cloud-amd64"],
        ["nvidia-driver-pinning-580"],
        ["nvidia-open", "nvidia-persistenced"],  # item 5: nvidia-persistenced's unit
    ]
    assert "dlenv_cuda_repo debian12" in run.log
    assert "systemctl enable --now nvidia-persistenced" in run.log


def test_debian_rerun_with_a_newer_branch_moves_to_the_pinned_one(tmp_path: Path) -> None:
    newer = {
        "linux-headers-6.1.0-37-cloud-amd64": "6.1.137-1",
        "nvidia-open": "590.48.01-1",
        "nvidia-persistenced": "590.48.01-1",
    }
    run = _run(
        tmp_path,
        _facts(DEBIAN, "g4dn-t4"),
        kernel=DEBIAN[1],
        installed=newer,
        os_release="debian-12",
    )
    assert run.rc == 0, run.out
    assert run.apt_installs()[0] == ["nvidia-driver-pinning-580"]
    downgrade = [line for line in run.log if "--allow-downgrades" in line]
    assert downgrade and "nvidia-open" in downgrade[0], run.log
    assert "nvidia-open 590.48.01-1 is not branch 580" in run.out
    assert (run.state / "pkg" / "nvidia-open").read_text().startswith("580.")


def test_debian_rerun_that_cannot_downgrade_says_what_to_do(tmp_path: Path) -> None:
    newer = {"linux-headers-6.1.0-37-cloud-amd64": "6.1.137-1", "nvidia-open": "590.48.01-1"}
    run = _run(
        tmp_path,
        _facts(DEBIAN, "g4dn-t4"),
        kernel=DEBIAN[1],
        installed=newer,
        stuck=True,
        os_release="debian-12",
    )
    assert run.rc == 1
    assert "still not branch 580 after installing nvidia-driver-pinning-580" in run.out
    assert "apt-get purge nvidia-open" in run.out


# -- item 3: Debian 12 whose running kernel's headers left the archive ---------------------------
def test_debian_without_headers_for_the_running_kernel_installs_the_cloud_kernel_and_reboots(
    tmp_path: Path,
) -> None:
    kernel = "6.1.0-10-cloud-amd64"
    run = _run(
        tmp_path,
        facts_for("debian-12", f"{kernel} x86_64", "g4dn-t4"),
        kernel=kernel,
        missing=(f"linux-headers-{kernel}",),
        os_release="debian-12",
    )
    assert run.rc == 0, run.out
    assert run.apt_installs() == [["linux-image-cloud-amd64", "linux-headers-cloud-amd64"]]
    reboots = [line for line in run.log if line.startswith("REBOOT")]
    assert reboots and f"linux-headers-{kernel} is no longer in the archive" in reboots[0]
    assert "nvidia-open" not in " ".join(run.log)  # the driver comes after the reboot


def test_debian_headers_gone_and_cloud_kernel_installed_but_not_booted_fails_clearly(
    tmp_path: Path,
) -> None:
    kernel = "6.1.0-10-cloud-amd64"
    run = _run(
        tmp_path,
        facts_for("debian-12", f"{kernel} x86_64", "g4dn-t4"),
        kernel=kernel,
        missing=(f"linux-headers-{kernel}",),
        os_release="debian-12",
        installed={
            "linux-image-cloud-amd64": "6.1.137-1",
            "linux-headers-cloud-amd64": "6.1.137-1",
        },
    )
    assert run.rc == 1
    assert "linux-image-cloud-amd64 is installed but not running: reboot into it" in run.out
    assert not any(line.startswith("REBOOT") for line in run.log)


def test_a_hostile_kernel_release_is_never_rendered() -> None:
    """The running kernel's release comes from the host: only a plain release is rendered."""
    facts = facts_for("ubuntu-24.04", "6.8.0-1015-aws$(touch${IFS}/tmp/x) x86_64", "g4dn-t4")
    _, _, apply = _render(facts)
    assert "touch" not in apply
    assert 'running_modules="linux-modules-nvidia-580-server-open-$(uname -r)"' in apply
