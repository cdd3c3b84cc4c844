"""The GPU checks' shell logic against recorded tool outputs (data-driven: cases/checks/*.json).

Each case runs one prelude helper (e.g. `dlenv_driver_ok 580`) in bash with stub executables
that print the recorded output of `nvidia-smi`, `nvcc` or `uname` for the matching arguments.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from dlenv.provision.manifest import load_stack
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.steps import build_steps
from harness.recorded import CASES, DATA

CASE_FILES = sorted((CASES / "checks").glob("*.json"))
STUBBED_ALWAYS = ("nvidia-smi", "nvcc", "systemctl")


def _stub(directory: Path, command: str, rules: list[dict[str, object]]) -> None:
    lines = ["#!/bin/bash", 'args="$*"']
    for rule in rules:
        text = (DATA / str(rule["file"])).read_text() if "file" in rule else str(rule["text"])
        out = directory / f"{command}.{len(lines)}.out"
        out.write_text(text)
        lines.append(
            f'if [[ "$args" == *{shlex.quote(str(rule["match"]))}* ]]; then cat {shlex.quote(str(out))}; '
            f"exit {int(rule.get('exit', 0))}; fi"
        )  # type: ignore[call-overload]
    lines.append(f'echo "{command}: unexpected arguments: $args" >&2; exit 2')
    path = directory / command
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)


@pytest.mark.parametrize("case_file", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_check_logic(case_file: Path, tmp_path: Path) -> None:
    case = json.loads(case_file.read_text())
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for command in STUBBED_ALWAYS:  # absent unless the case provides it, even on a GPU machine
        (stubs / command).write_text('#!/bin/sh\necho "$0: command not found" >&2\nexit 127\n')
        (stubs / command).chmod(0o755)
    for command, rules in case["stubs"].items():
        _stub(stubs, command, rules)
    prelude = build_steps(load_stack(), ProvisionOptions(), None).prelude
    script = f"{prelude}\nexport PATH={shlex.quote(str(stubs))}:$PATH\n{case['call']}\n"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert proc.returncode == case["exit"], proc.stderr
