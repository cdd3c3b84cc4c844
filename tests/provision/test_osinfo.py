"""Fact parsers against recorded os-release / lspci / nvidia-smi / nvcc outputs."""

from __future__ import annotations

import pytest

from dlenv.errors import ProvisionError
from dlenv.provision.manifest import load_stack
from dlenv.provision.osinfo import (
    kernel_flavour,
    nvidia_devices,
    nvswitch_devices,
    parse_os_release,
    require_supported,
)
from harness.recorded import DATA, facts_for


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("ubuntu-22.04", "ubuntu-22.04"),
        ("ubuntu-24.04", "ubuntu-24.04"),
        ("debian-12", "debian-12"),
        ("amzn-2023", "amzn-2023"),
        ("ubuntu-20.04", "ubuntu-20.04"),
    ],
)
def test_os_release(name: str, key: str) -> None:
    assert parse_os_release((DATA / "os-release" / f"{name}.txt").read_text()).key == key


@pytest.mark.parametrize(
    ("lspci", "gpus"),
    [
        ("g4dn-t4", ["00:1e.0 10de:1eb8"]),
        ("g5-a10g", ["00:1e.0 10de:2237"]),
        ("t3-cpu", []),
        ("nvswitch-only", []),
    ],
)
def test_nvidia_gpu_detection(lspci: str, gpus: list[str]) -> None:
    assert list(nvidia_devices((DATA / "lspci" / f"{lspci}.txt").read_text())) == gpus


@pytest.mark.parametrize(
    ("lspci", "switches", "gpus", "has_nvswitch"),
    [
        # NVIDIA's Fabric Manager user guide, HGX H100 / HGX A100 baseboards (data/README.md)
        (
            "p5-h100-nvswitch",
            ["07:00.0 10de:22a3", "08:00.0 10de:22a3", "09:00.0 10de:22a3", "0a:00.0 10de:22a3"],
            8,
            True,
        ),
        (
            "p4d-a100-nvswitch",
            [f"{b}:00.0 10de:1af1" for b in ("6d", "6e", "6f", "70", "71", "72")],
            8,
            True,
        ),
        ("g4dn-t4", [], 1, False),
        ("g5-a10g", [], 1, False),
        # an NVSwitch without any GPU on the bus is no reason for Fabric Manager
        ("nvswitch-only", ["10:00.0 10de:1af1"], 0, False),
    ],
)
def test_nvswitch_detection(lspci: str, switches: list[str], gpus: int, has_nvswitch: bool) -> None:
    """Issue 17 item 1: NVSwitches (class 0680 NVIDIA bridges) are a fact of the probe."""
    text = (DATA / "lspci" / f"{lspci}.txt").read_text()
    assert list(nvswitch_devices(text)) == switches
    assert len(nvidia_devices(text)) == gpus
    facts = facts_for("ubuntu-24.04", "6.8.0-1015-aws x86_64", lspci)
    assert facts.nvswitch_pci == tuple(switches)
    assert facts.has_nvswitch is has_nvswitch


def test_nvswitch_detection_from_the_sysfs_fallback() -> None:
    """Without pciutils the probe prints `<addr> <class>: <vendor>:<device>` from sysfs."""
    text = "0000:07:00.0 0680: 10de:22a3\n0000:1b:00.0 0302: 10de:2330\n"
    assert nvswitch_devices(text) == ("0000:07:00.0 10de:22a3",)


@pytest.mark.parametrize(
    ("release", "flavour"),
    [
        ("6.8.0-1015-aws", "aws"),
        ("5.15.0-91-generic", "generic"),
        ("6.8.0-1021-azure", "azure"),
        ("6.1.0-37-cloud-amd64", "cloud-amd64"),
        ("6.8.0", ""),
    ],
)
def test_kernel_flavour(release: str, flavour: str) -> None:
    assert kernel_flavour(release) == flavour


def test_probe_output_round_trip() -> None:
    facts = facts_for(
        "ubuntu-24.04",
        "6.8.0-1015-aws x86_64",
        "g4dn-t4",
        records="python-env 5b8bf998584f abc 2026-01-01T00:00:00Z",
    )
    assert (
        facts.os.key == "ubuntu-24.04" and facts.kernel_flavour == "aws" and facts.arch == "x86_64"
    )
    assert facts.has_nvidia_gpu and facts.user == "ubuntu" and facts.home == "/home/ubuntu"
    assert facts.records == {"python-env": "5b8bf998584f abc 2026-01-01T00:00:00Z"}
    assert not facts_for("debian-12", "6.1.0-37-cloud-amd64 x86_64", "t3-cpu").has_nvidia_gpu


@pytest.mark.parametrize("os_name", ["amzn-2023", "ubuntu-20.04"])
def test_unsupported_os_is_refused_with_the_supported_list(os_name: str) -> None:
    stack = load_stack()
    facts = facts_for(os_name, "6.1.0-1 x86_64", "t3-cpu")
    with pytest.raises(ProvisionError, match=r"unsupported OS .*nothing was changed") as info:
        require_supported(facts, stack.supported_os, ["x86_64"], "h")
    assert "ubuntu-22.04, ubuntu-24.04, debian-12" in (info.value.hint or "")


def test_unsupported_arch_is_refused() -> None:
    facts = facts_for("ubuntu-24.04", "6.8.0-1015-aws aarch64", "t3-cpu")
    with pytest.raises(ProvisionError, match="architecture aarch64"):
        require_supported(facts, load_stack().supported_os, ["x86_64"], "h")
