"""Host facts: one read-only probe command and a pure parser (the pyinfra way).

The probe runs in one SSH round trip; `parse_facts` turns its output into `HostFacts`, so the
logic is tested against recorded outputs (os-release files, `uname -r`, `lspci -n`,
`nvidia-smi`) without a host.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from dlenv.errors import ProvisionError

NVIDIA_PCI_VENDOR = "10de"
# PCI classes of display/3D controllers (0300 VGA, 0302 3D controller: data-centre GPUs).
_GPU_CLASSES = ("0300", "0302")
# NVSwitches sit on the PCI bus as NVIDIA devices of class 0680 ("Bridge", other bridge): NVIDIA's
# Fabric Manager user guide lists them on HGX-2 (10de:1ac2), HGX A100 (10de:1af1) and HGX H100/H200
# (10de:22a3) baseboards. Class, not device id, decides, so a later generation is found too.
# (HGX B200/B300 reach their NVSwitches through a ConnectX-7 bridge instead; not detected here.)
NVSWITCH_CLASS = "0680"

PROBE = r"""
echo "@@os-release"; cat /etc/os-release 2>/dev/null || true
echo "@@uname"; uname -rm
echo "@@lspci"; (lspci -n 2>/dev/null || for d in /sys/bus/pci/devices/*; do
  [ -r "$d/vendor" ] && echo "$(basename "$d") $(cut -c3-6 "$d/class"): $(cut -c3- "$d/vendor"):$(cut -c3- "$d/device")"; done) || true
echo "@@proc-nvidia"; ls /proc/driver/nvidia/gpus 2>/dev/null || true
echo "@@nvidia-smi"; (nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true)
echo "@@systemd"; [ -d /run/systemd/system ] && echo yes || echo no
echo "@@user"; id -un; echo "$HOME"
echo "@@records"; for f in /var/lib/dlenv/steps/*; do [ -f "$f" ] && echo "$(basename "$f") $(cat "$f")"; done 2>/dev/null || true
echo "@@end"
"""


@dataclass(frozen=True)
class OsInfo:
    id: str
    version: str
    codename: str = ""
    pretty: str = ""

    @property
    def key(self) -> str:
        """`ubuntu-24.04`, `debian-12`: the manifest's notation."""
        return f"{self.id}-{self.version}"


@dataclass(frozen=True)
class HostFacts:
    os: OsInfo
    kernel: str = ""
    arch: str = "x86_64"
    nvidia_pci: tuple[str, ...] = ()
    nvswitch_pci: tuple[str, ...] = ()
    nvidia_smi: str = ""
    systemd: bool = True
    user: str = ""
    home: str = ""
    records: dict[str, str] = field(default_factory=dict)

    @property
    def has_nvidia_gpu(self) -> bool:
        return bool(self.nvidia_pci) or bool(self.nvidia_smi.strip())

    @property
    def has_nvswitch(self) -> bool:
        """GPUs behind NVSwitches: Fabric Manager must run before CUDA can use them (error 802)."""
        return self.has_nvidia_gpu and bool(self.nvswitch_pci)

    @property
    def kernel_flavour(self) -> str:
        return kernel_flavour(self.kernel)


def parse_os_release(text: str) -> OsInfo:
    values: dict[str, str] = {}
    for line in text.splitlines():
        if "=" not in line or line.lstrip().startswith("#"):
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw.strip("\"'")]
        values[key.strip()] = parts[0] if parts else ""
    if not values.get("ID"):
        raise ProvisionError("cannot identify the host's OS: /etc/os-release is missing or empty")
    return OsInfo(
        id=values["ID"].lower(),
        version=values.get("VERSION_ID", ""),
        codename=values.get("VERSION_CODENAME", ""),
        pretty=values.get("PRETTY_NAME", values["ID"]),
    )


def kernel_flavour(release: str) -> str:
    """`6.8.0-1015-aws` -> `aws`, `5.15.0-91-generic` -> `generic` (Ubuntu's naming)."""
    match = re.match(r"^\d+\.\d+\.\d+-\d+-([a-z0-9-]+)$", release.strip())
    return match.group(1) if match else ""


def _nvidia_pci(lspci_n: str, classes: tuple[str, ...]) -> tuple[str, ...]:
    found = []
    for line in lspci_n.splitlines():
        match = re.match(
            r"^(\S+)\s+(?:Class\s+)?([0-9a-f]{4}):\s+([0-9a-f]{4}):([0-9a-f]{4})", line.strip()
        )
        if match and match.group(3) == NVIDIA_PCI_VENDOR and match.group(2) in classes:
            found.append(f"{match.group(1)} {match.group(3)}:{match.group(4)}")
    return tuple(found)


def nvidia_devices(lspci_n: str) -> tuple[str, ...]:
    """NVIDIA display/3D controllers in `lspci -n` output (`00:1e.0 0302: 10de:1eb8 (rev a1)`)."""
    return _nvidia_pci(lspci_n, _GPU_CLASSES)


def nvswitch_devices(lspci_n: str) -> tuple[str, ...]:
    """NVIDIA NVSwitches in `lspci -n` output (`07:00.0 0680: 10de:22a3 (rev a1)`)."""
    return _nvidia_pci(lspci_n, (NVSWITCH_CLASS,))


def _sections(output: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def parse_facts(output: str) -> HostFacts:
    s = _sections(output)
    if "end" not in s:
        raise ProvisionError("the host probe was cut short (is the connection stable?)")
    uname = s.get("uname", "").split()
    user_lines = s.get("user", "").splitlines()
    records = {}
    for line in s.get("records", "").splitlines():
        name, _, rest = line.partition(" ")
        if name:
            records[name] = rest
    pci = nvidia_devices(s.get("lspci", ""))
    if not pci and s.get("proc-nvidia", "").strip():
        pci = tuple(s["proc-nvidia"].split())
    return HostFacts(
        os=parse_os_release(s.get("os-release", "")),
        kernel=uname[0] if uname else "",
        arch=uname[1] if len(uname) > 1 else "",
        nvidia_pci=pci,
        nvswitch_pci=nvswitch_devices(s.get("lspci", "")),
        nvidia_smi=s.get("nvidia-smi", "").strip(),
        systemd=s.get("systemd", "").strip() == "yes",
        user=user_lines[0] if user_lines else "",
        home=user_lines[1] if len(user_lines) > 1 else "",
        records=records,
    )


def require_supported(facts: HostFacts, supported: list[str], arches: list[str], host: str) -> None:
    """Refuse an unsupported OS/arch before anything is changed on the host."""
    if facts.os.key not in supported:
        raise ProvisionError(
            f"unsupported OS {facts.os.pretty or facts.os.key} ({facts.os.key}); nothing was changed",
            f"dlenv supports {', '.join(supported)}",
            host=host,
        )
    if facts.arch and facts.arch not in arches:
        raise ProvisionError(
            f"unsupported architecture {facts.arch}; nothing was changed",
            f"dlenv supports {', '.join(arches)}",
            host=host,
        )
