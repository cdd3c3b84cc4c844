"""Debian 12's driver install against a real apt, in a Debian 12 host container (issue 17).

The container gets a local apt repository that stands in for NVIDIA's CUDA repository: package
`nvidia-open` in branches 580 and 590 (each shipping an `nvidia-smi` that reports its version),
`nvidia-persistenced` of both, and `nvidia-driver-pinning-580`, which, like NVIDIA's, only
drops an apt preferences file pinning the driver packages to 580.*. The nvidia-driver step's
rendered apply then runs for real (apt-get, dpkg, systemd), only the network part (adding
NVIDIA's repository) replaced. What is tested is apt's resolution: the pin installed in the same
apt call as the driver cannot affect which branch that call picks (item 2), and a host whose
running kernel's headers left the archive moves to the cloud kernel with a reboot (item 3).
"""

from __future__ import annotations

import shlex
import subprocess

import pytest

from dlenv.provision.manifest import load_stack
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.steps import build_steps
from harness.recorded import facts_for

pytestmark = [pytest.mark.docker, pytest.mark.hosts]

KERNEL = "6.1.0-37-cloud-amd64"
OLD_KERNEL = "6.1.0-10-cloud-amd64"

# Builds /srv/repo (trusted, file:) and makes it the only apt source.
REPO_SETUP = r"""
set -euo pipefail
mkdir -p /srv/repo /tmp/build /etc/modprobe.d  # kmod's folder, present on a real host
deb() {  # deb NAME VERSION [DEPENDS] [FILE CONTENT]
  local name=$1 version=$2 depends=${3:-} file=${4:-} content=${5:-} d=/tmp/build/$1-$2
  mkdir -p "$d/DEBIAN"
  { echo "Package: $name"; echo "Version: $version"; echo "Architecture: all"
    echo "Maintainer: dlenv tests <t@example.invalid>"
    [ -z "$depends" ] || echo "Depends: $depends"
    echo "Description: stand-in for $name"; } > "$d/DEBIAN/control"
  if [ -n "$file" ]; then mkdir -p "$d$(dirname "$file")"; printf '%s\n' "$content" > "$d$file"
    case "$file" in */bin/*) chmod 755 "$d$file" ;; esac; fi
  dpkg-deb -Zgzip --build "$d" "/srv/repo/${name}_${version}_all.deb" >/dev/null
}
for v in 580.95.05 590.48.01; do
  deb nvidia-persistenced "$v-1"
  deb nvidia-open "$v-1" "nvidia-persistenced (= $v-1)" /usr/bin/nvidia-smi \
"#!/bin/bash
case \"\$*\" in
  *driver_version*) echo $v ;;
  '-pm 1') echo 'Enabled persistence mode' ;;
  '') echo '| NVIDIA-SMI $v   Driver Version: $v   CUDA Version: 13.0 |' ;;
  *) exit 2 ;;
esac"
done
deb nvidia-driver-pinning-580 580.95.05-1 "" /etc/apt/preferences.d/nvidia-driver-pinning-580 \
"Package: nvidia-open nvidia-persistenced
Pin: version 580.*
Pin-Priority: 1000"
deb "linux-headers-$KERNEL" 6.1.140-1
deb linux-image-cloud-amd64 6.1.140-1
deb linux-headers-cloud-amd64 6.1.140-1
cd /srv/repo
: > Packages
for f in *.deb; do
  dpkg-deb -f "$f" >> Packages
  echo "Filename: ./$f" >> Packages
  echo "Size: $(stat -c %s "$f")" >> Packages
  echo "SHA256: $(sha256sum "$f" | cut -d' ' -f1)" >> Packages
  echo >> Packages
done
mkdir -p /root/apt-off
mv /etc/apt/sources.list.d/* /root/apt-off/ 2>/dev/null || true
[ ! -e /etc/apt/sources.list ] || mv /etc/apt/sources.list /root/apt-off/
echo "deb [trusted=yes] file:/srv/repo ./" > /etc/apt/sources.list.d/local.list
# The host pool mounts one apt archive folder into every host (a local mirror, in effect); apt
# takes an exclusive lock on it and fails instead of waiting when another test's host holds it.
# This repository needs no download cache: a folder of this host's own.
mkdir -p /var/cache/apt/dlenv-own-archives/partial
echo 'Dir::Cache::Archives "/var/cache/apt/dlenv-own-archives/";' \
  > /etc/apt/apt.conf.d/00dlenv-own-archives
apt-get update -qq
# the running kernel, as the step sees it
printf '#!/bin/sh\ncase "$1" in -r) echo %s ;; *) exec /bin/uname "$@" ;; esac\n' "$KERNEL" \
  > /usr/local/bin/uname
chmod 755 /usr/local/bin/uname
"""


def _sh(host, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", "-i", host.container, "bash", "-s"],
        input=script,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _apply_script() -> str:
    facts = facts_for("debian-12", f"{KERNEL} x86_64", "g4dn-t4")
    stepset = build_steps(load_stack(), ProvisionOptions(), facts)
    apply = {s.name: s for s in stepset.steps}["nvidia-driver"].apply
    # NVIDIA's repository needs the network: the local one stands in for it
    overrides = 'dlenv_cuda_repo() { dlenv_log "(test) NVIDIA repository for $1 stands in"; }\n'
    overrides += "export -f dlenv_cuda_repo\n"
    return f"{stepset.prelude}\n{overrides}bash -eo pipefail -c {shlex.quote(apply)}\n"


def _version(host, pkg: str) -> str:
    out = host.exec(f"dpkg-query -W -f='${{Status}} ${{Version}}' {pkg} 2>/dev/null || true")
    return out.stdout.replace("install ok installed ", "").strip()


@pytest.fixture
def debian_host(host_pool):
    host = host_pool()
    setup = _sh(host, f"KERNEL={KERNEL}\n{REPO_SETUP}")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    return host


def test_the_pin_in_its_own_apt_call_makes_apt_pick_the_pinned_branch(debian_host) -> None:
    # what the step did before (pin and driver in one call) resolves the newest branch
    one_call = _sh(
        debian_host,
        "apt-get install -y -qq nvidia-driver-pinning-580 nvidia-open "
        "--dry-run | grep '^Inst nvidia-open'",
    )
    assert "590.48.01" in one_call.stdout, one_call.stdout + one_call.stderr
    run = _sh(debian_host, _apply_script())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert _version(debian_host, "nvidia-driver-pinning-580") == "580.95.05-1"
    assert _version(debian_host, "nvidia-open") == "580.95.05-1"
    assert _version(debian_host, "nvidia-persistenced") == "580.95.05-1"


def test_a_rerun_on_a_newer_branch_moves_to_the_pinned_one(debian_host) -> None:
    newer = _sh(debian_host, "apt-get install -y -qq nvidia-open")  # before any pin: 590
    assert newer.returncode == 0, newer.stderr
    assert _version(debian_host, "nvidia-open") == "590.48.01-1"
    run = _sh(debian_host, _apply_script())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "nvidia-open 590.48.01-1 is not branch 580: moving to the pinned branch" in run.stdout
    assert _version(debian_host, "nvidia-open") == "580.95.05-1"
    assert _version(debian_host, "nvidia-persistenced") == "580.95.05-1"


def test_headers_gone_from_the_archive_install_the_cloud_kernel_and_ask_for_a_reboot(
    debian_host,
) -> None:
    old = debian_host.exec(
        f'printf \'#!/bin/sh\\ncase "$1" in -r) echo {OLD_KERNEL} ;; *) exec /bin/uname "$@" ;; esac\\n\''
        " > /usr/local/bin/uname; rm -f /run/dlenv/reboot-required",
        check=True,
    )
    assert old.returncode == 0
    run = _sh(debian_host, _apply_script())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    marker = debian_host.exec("cat /run/dlenv/reboot-required").stdout
    assert f"linux-headers-{OLD_KERNEL} is no longer in the archive" in marker
    assert _version(debian_host, "linux-image-cloud-amd64") == "6.1.140-1"
    assert _version(debian_host, "linux-headers-cloud-amd64") == "6.1.140-1"
    assert _version(debian_host, "nvidia-open") == ""  # the driver comes after the reboot
    # a second run without that reboot explains instead of looping
    again = _sh(debian_host, _apply_script())
    assert again.returncode == 1
    assert "linux-image-cloud-amd64 is installed but not running: reboot into it" in again.stderr
