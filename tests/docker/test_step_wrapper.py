"""THE step wrapper (`dlenv.provision.render.step_script`) run for real, in both of its modes.

The SSH runner sends it in "exit" mode, the rendered script (Dockerfile, Packer) in "note" mode.
Each case runs a stand-in step under bash as root in a throwaway container of the Debian base
image (the wrapper writes /var/lib/dlenv and /run, which are not this machine's to write) and
checks the exit code, the log lines and the step record.
"""

from __future__ import annotations

import subprocess

import pytest

from dlenv.provision.render import RebootMode, step_script
from dlenv.provision.steps import REBOOT_EXIT, Step

pytestmark = pytest.mark.docker

PRELUDE = (
    'dlenv_log() { echo "[dlenv] $*"; }\n'
    "dlenv_reboot_required() { mkdir -p /run/dlenv; touch /run/dlenv/reboot-required; }\n"
    "export -f dlenv_log dlenv_reboot_required\n"
    "DLENV_FINGERPRINT=fp0\n"
)
"""Stand-ins for what provision/steps/_prelude.sh.j2 gives every body."""

DONE = Step("done", "already true", check="true\n", apply="exit 3\n")
APPLIES = Step("applies", "made true", check="[ -e /tmp/made ]\n", apply="touch /tmp/made\n")
APT_LIKE = Step("apt-like", "fails like apt-get", check="false\n", apply="exit 100\n")
NEEDS_REBOOT = Step(
    "reboots", "asks for a reboot", check="[ -e /tmp/r ]\n", apply="dlenv_reboot_required\n"
)
STILL_FALSE = Step("still-false", "applies, check stays false", check="false\n", apply="true\n")
EATS_STDIN = Step(
    "eats", "reads stdin", check="cat >/dev/null; [ -e /tmp/e ]\n", apply="cat; touch /tmp/e\n"
)


def _run(base_image: str, step: Step, mode: RebootMode, after: str = "") -> tuple[int, str]:
    """Exit code and output of PRELUDE + the wrapper (+ `after`), fed to bash on stdin."""
    script = PRELUDE + step_script(step, reboot=mode) + after
    script += f"\necho RECORD; cat /var/lib/dlenv/steps/{step.name} 2>/dev/null || echo none\n"
    proc = subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", "none", base_image, "bash", "-s"],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("mode", ["exit", "note"])
def test_a_done_step_is_recorded_and_not_applied(base_image: str, mode: RebootMode) -> None:
    code, out = _run(base_image, DONE, mode)
    assert code == 0, out
    assert "[dlenv] done: already done" in out and "applying" not in out
    assert out.split("RECORD\n", 1)[1].startswith(f"fp0 {DONE.digest} ")


@pytest.mark.parametrize("mode", ["exit", "note"])
def test_a_pending_step_is_applied_verified_and_recorded(base_image: str, mode: RebootMode) -> None:
    code, out = _run(base_image, APPLIES, mode)
    assert code == 0, out
    assert "[dlenv] applies: applying" in out
    assert out.split("RECORD\n", 1)[1].startswith(f"fp0 {APPLIES.digest} ")


@pytest.mark.parametrize(("mode", "expected"), [("exit", 1), ("note", 100)])
def test_a_failed_apply_names_its_code_and_records_nothing(
    base_image: str, mode: RebootMode, expected: int
) -> None:
    """The runner's wrapper exits 1 (100 is REBOOT_EXIT); the image build keeps the tool's code."""
    assert REBOOT_EXIT == 100
    code, out = _run(base_image, APT_LIKE, mode, after="echo NOT-REACHED\n")
    assert code == expected, out
    assert "[dlenv] apt-like: FAILED (exit 100)" in out
    assert "NOT-REACHED" not in out


def test_a_reboot_request_exits_reboot_exit_before_the_record_for_the_runner(
    base_image: str,
) -> None:
    code, out = _run(base_image, NEEDS_REBOOT, "exit")
    assert code == REBOOT_EXIT, out
    assert "RECORD" not in out  # the runner reboots, runs the wrapper again, and that records


def test_a_reboot_request_is_noted_and_recorded_in_the_single_script(base_image: str) -> None:
    code, out = _run(base_image, NEEDS_REBOOT, "note", after="ls /var/run/reboot-required\n")
    assert code == 0, out
    assert "reboots: done; a reboot is needed before it takes effect" in out
    assert "/var/run/reboot-required" in out
    assert out.split("RECORD\n", 1)[1].startswith(f"fp0 {NEEDS_REBOOT.digest} ")


@pytest.mark.parametrize("mode", ["exit", "note"])
def test_an_apply_whose_check_still_fails_is_a_failure(base_image: str, mode: RebootMode) -> None:
    code, out = _run(base_image, STILL_FALSE, mode)
    assert code == 1, out
    assert "still-false: FAILED: applied, but its check still fails" in out
    assert "RECORD" not in out  # it exited before its record


@pytest.mark.parametrize("mode", ["exit", "note"])
def test_check_and_apply_cannot_eat_the_rest_of_the_script(
    base_image: str, mode: RebootMode
) -> None:
    """A script fed to bash on stdin (`bash -s`) survives bodies that read stdin."""
    code, out = _run(base_image, EATS_STDIN, mode, after="echo STILL-HERE\n")
    assert code == 0, out
    assert "[dlenv] eats: applying" in out and "STILL-HERE" in out
