"""Build HostFacts from the recorded outputs in data/ (through the real probe parser)."""

from __future__ import annotations

from pathlib import Path

from dlenv.provision.osinfo import HostFacts, parse_facts

DATA = Path(__file__).resolve().parents[1] / "provision" / "data"
CASES = Path(__file__).resolve().parents[1] / "provision" / "cases"


def probe_output(
    os_release: str,
    kernel: str,
    lspci: str,
    *,
    user: str = "ubuntu",
    nvidia_smi: str = "",
    systemd: bool = True,
    records: str = "",
) -> str:
    """What the probe would print on such a host."""
    return "\n".join(
        [
            "@@os-release",
            (DATA / "os-release" / f"{os_release}.txt").read_text().rstrip(),
            "@@uname",
            kernel,
            "@@lspci",
            (DATA / "lspci" / f"{lspci}.txt").read_text().rstrip() if lspci else "",
            "@@proc-nvidia",
            "",
            "@@nvidia-smi",
            nvidia_smi,
            "@@systemd",
            "yes" if systemd else "no",
            "@@user",
            user,
            f"/home/{user}",
            "@@records",
            records,
            "@@end",
            "",
        ]
    )


def facts_for(os_release: str, kernel: str, lspci: str, **kw: object) -> HostFacts:
    return parse_facts(probe_output(os_release, kernel, lspci, **kw))  # type: ignore[arg-type]
