"""A step that needs a reboot (the NVIDIA driver's case): the runner reboots the host, waits for
it to go down, reconnects (host key still verified) and re-checks the step before recording it.

The host is a systemd container with restart policy "always": `systemctl reboot` inside it
really stops every process and boots it again, and /run is a fresh tmpfs afterwards.
"""

from __future__ import annotations

import subprocess

import pytest

from dlenv.provision import runner
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.steps import Step, StepSet
from dlenv.terminal import Terminal

pytestmark = [pytest.mark.docker, pytest.mark.hosts, pytest.mark.slow]

PROBE = Step(
    name="reboot-probe",
    summary="needs a reboot to take effect",
    # done = applied before, and /run (tmpfs) no longer holds the pre-reboot marker
    check="[ -e /var/lib/dlenv-test/applied ] && [ ! -e /run/dlenv-test-before-reboot ]\n",
    apply=(
        "mkdir -p /var/lib/dlenv-test\n"
        "touch /var/lib/dlenv-test/applied /run/dlenv-test-before-reboot\n"
        'dlenv_reboot_required "the probe needs a reboot"\n'
    ),
    tags=("reboot",),
)


def test_reboot_is_handled_by_reconnecting(host_pool, monkeypatch) -> None:
    host = host_pool(rebootable=True)
    real = runner.build_steps

    def only_the_probe(stack, options, facts):
        stepset = real(stack, options, facts)
        return StepSet(stepset.prelude, (PROBE,), stepset.fingerprint)

    monkeypatch.setattr(runner, "build_steps", only_the_probe)
    started = _started_at(host.container)
    events: list[tuple[str, str]] = []
    [res] = runner.provision(
        [host.target()],
        ProvisionOptions(python="uv"),
        Terminal(interactive=False),
        events=lambda label, event, step, text: events.append((event, step)),
    )
    assert res.ok, res.error
    assert res.applied == ["reboot-probe"]
    assert ("reboot", "reboot-probe") in events
    assert _started_at(host.container) != started  # it really went down and came back
    assert host.exec("cat /var/lib/dlenv/steps/reboot-probe").stdout.startswith(
        runner.load_stack().fingerprint
    )


def _started_at(container: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_a_tool_exiting_100_is_a_failure_not_a_reboot(host_pool, monkeypatch) -> None:
    """apt-get exits 100 on errors: that must fail the step, never trigger a reboot."""
    host = host_pool(rebootable=True)
    real = runner.build_steps
    apt_like = Step(
        name="apt-like", summary="fails like apt-get", check="false\n", apply="exit 100\n"
    )

    def only_apt_like(stack, options, facts):
        stepset = real(stack, options, facts)
        return StepSet(stepset.prelude, (apt_like,), stepset.fingerprint)

    monkeypatch.setattr(runner, "build_steps", only_apt_like)
    started = _started_at(host.container)
    [res] = runner.provision(
        [host.target()], ProvisionOptions(python="uv"), Terminal(interactive=False)
    )
    assert not res.ok and res.failed_step == "apt-like"
    assert "apt-like: FAILED (exit 100)" in res.error.message
    assert _started_at(host.container) == started
