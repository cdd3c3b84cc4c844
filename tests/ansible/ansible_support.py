"""Helpers of the Ansible tests: run ansible-playbook from the repository root, read its recap,
write inventories for host containers.

A module of its own (not conftest.py) because pytest's importlib mode cannot import conftest
modules by name; the fixtures live in conftest.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
SITE = ANSIBLE_DIR / "site.yml"
BIN = Path(sys.executable).parent

_RECAP = re.compile(
    r"^(?P<host>\S+)\s*: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)"
    r"\s+ignored=(?P<ignored>\d+)",
    re.M,
)


def tool(name: str) -> Path:
    """A console script of the test venv (ansible-playbook, ansible-lint, yamllint)."""
    path = BIN / name
    if not path.exists():
        import pytest

        # a missing test dependency fails the run (a skip would hide the checks never run)
        pytest.fail(f"{name} is not installed: run scripts/test (it installs the `test` extra)")
    return path


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment minus anything that would point Ansible at a config file, so
    runs prove the plain `ansible-playbook -i INVENTORY ansible/site.yml` works."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        {
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "NO_COLOR": "1",
            "PY_COLORS": "0",
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    env.update(extra or {})
    return env


@dataclass
class PlaybookRun:
    argv: list[str]
    returncode: int
    output: str
    seconds: float

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        return {
            m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
            for m in _RECAP.finditer(self.output)
        }

    def tail(self, n: int = 120) -> str:
        return "\n".join(self.output.splitlines()[-n:])

    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported a change (for readable assertion messages)."""
        tasks, current = [], ""
        for line in self.output.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                current = line.split("[", 1)[1].rsplit("]", 1)[0]
            elif line.startswith("changed:") and current not in tasks:
                tasks.append(current)
        return tasks


def playbook(
    inventory: Path, *args: str, timeout: float = 900, env: dict[str, str] | None = None
) -> PlaybookRun:
    """`ansible-playbook -i INVENTORY ansible/site.yml ARGS`, from the repository root."""
    argv = [str(tool("ansible-playbook")), "-i", str(inventory), str(SITE.relative_to(REPO)), *args]
    start = time.monotonic()
    proc = subprocess.run(
        argv,
        cwd=REPO,
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    return PlaybookRun(argv, proc.returncode, proc.stdout, time.monotonic() - start)


def host_entry(host, **dlenv_vars: object) -> dict[str, object]:
    """Inventory variables reaching a harness TestHost over real SSH, host key checked."""
    return {
        "ansible_host": "127.0.0.1",
        "ansible_port": host.port,
        "ansible_user": "dlenv",
        "ansible_ssh_private_key_file": str(host.key),
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={host.known_hosts} -o StrictHostKeyChecking=yes"
        ),
        "ansible_python_interpreter": "/usr/bin/python3",
        # One SSH round trip per task instead of three (what any Ansible user turns on).
        "ansible_pipelining": True,
        **dlenv_vars,
    }


def write_inventory(path: Path, hosts: dict[str, dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
    return path
