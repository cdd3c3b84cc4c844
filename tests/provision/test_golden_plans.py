"""Golden plans: facts in (os-release, kernel, lspci), rendered commands out, per OS.

Data-driven: each cases/golden/*.json is one case; the rendered apply of every GPU step is
compared with golden/<case>/<step>.sh, plus the case's must-contain / must-not-contain lists.
A new OS or GPU case needs a JSON file, no new test code. Regenerate the golden files after an
intended change with DLENV_UPDATE_GOLDEN=1 (and review the diff).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dlenv.provision.manifest import load_stack
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.steps import build_steps
from harness.recorded import CASES, facts_for

GOLDEN = Path(__file__).parent / "golden"
CASE_FILES = sorted((CASES / "golden").glob("*.json"))


@pytest.mark.parametrize("case_file", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_golden_plan(case_file: Path) -> None:
    case = json.loads(case_file.read_text())
    facts = facts_for(case["os_release"], case["kernel"], case["lspci"])
    stepset = build_steps(load_stack(), ProvisionOptions(**case["options"]), facts)
    steps = {s.name: s for s in stepset.steps}
    for name, reason in case.get("skipped", {}).items():
        assert steps[name].skip_reason == reason, name
    for name, expect in case["expect"].items():
        step = steps[name]
        assert step.skip_reason is None, f"{name} unexpectedly skipped: {step.skip_reason}"
        for needle in expect.get("contains", []):
            assert needle in step.apply, f"{name}: {needle!r} missing"
        for needle in expect.get("absent", []):
            assert needle not in step.apply + step.check, f"{name}: {needle!r} must not appear"
    for step in stepset.steps:
        if not step.gpu_only or step.skip_reason:
            continue
        golden = GOLDEN / case_file.stem / f"{step.name}.sh"
        text = f"# check\n{step.check}# apply\n{step.apply}"
        if os.environ.get("DLENV_UPDATE_GOLDEN") == "1":
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text)
        assert golden.is_file(), (
            f"no golden file {golden} (run with DLENV_UPDATE_GOLDEN=1 and review)"
        )
        assert text == golden.read_text(), f"{step.name} differs from {golden}"


def test_every_supported_os_has_a_gpu_case() -> None:
    covered = {
        json.loads(p.read_text())["os_release"]
        for p in CASE_FILES
        if json.loads(p.read_text())["lspci"] in {"g4dn-t4", "g5-a10g"}
    }
    assert set(load_stack().supported_os) <= covered
