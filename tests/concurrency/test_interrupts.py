"""Ctrl-C (and SIGTERM) at every AWS mutation point of `up` and `down` tells the truth.

The proxy holds the chosen request as a barrier (it reaches moto and is carried out, as AWS
carries out a request that reached it, before anything sent later), the CLI is signalled while
it waits for the answer, then the request is released. Asserted: exit 130; the `remains:` line
lists exactly what moto holds for the name; a rerun of `up` converges and `down` leaves nothing
in moto nor on disk.
"""

from __future__ import annotations

import signal
import time

import pytest

UP_POINTS = [
    "ImportKeyPair",
    "CreateSecurityGroup",
    "AuthorizeSecurityGroupIngress",
    "RunInstances",
]
DOWN_POINTS = ["TerminateInstances", "DeleteSecurityGroup", "DeleteKeyPair"]


def _interrupt_at(lab, machine, action, args, sig=signal.SIGINT):
    """Run `dlenv ARGS`, signal it while `action` is held at the proxy, then release."""
    hold = lab.proxy.hold(action, barrier=True)
    proc = machine.spawn(*args)
    hold.wait_arrived()
    proc.send_signal(sig)
    time.sleep(0.5)  # the signal lands while the request is still in flight
    hold.release()
    return lab.finish(proc)


def _assert_clean(lab, machine, name):
    assert lab.aws(name) == lab.NOTHING
    assert not machine.key(name).exists()
    assert not machine.key(name).with_suffix(".pub").exists()
    assert f"dlenv:begin {name}\n" not in machine.include()


@pytest.mark.parametrize(
    ("action", "sig"),
    [(a, signal.SIGINT) for a in UP_POINTS] + [("RunInstances", signal.SIGTERM)],
    ids=[f"{a}-SIGINT" for a in UP_POINTS] + ["RunInstances-SIGTERM"],
)
def test_interrupted_up_rolls_back_and_says_what_remains(lab, action, sig):
    name = f"iu-{UP_POINTS.index(action)}-{int(sig)}"
    m = lab.machine()
    r = _interrupt_at(lab, m, action, ["up", name, "--no-provision", "--yes"], sig)
    assert r.code == 130, r.err
    assert "Traceback" not in r.err
    assert "interrupted" in r.err
    # what the CLI says remains is what moto holds; the rollback found everything by its tag,
    # also what the interrupted request created after the CLI stopped waiting for it
    assert lab.remains_in_aws(r.err) == lab.in_aws(name), r.err
    assert "remains: nothing" in r.err, r.err
    _assert_clean(lab, m, name)
    if action == "RunInstances":
        assert "rolled back: terminated i-" in r.err, r.err

    down = m.run("down", name, "--yes")
    assert down.code in (0, 1) and "Traceback" not in down.err
    _assert_clean(lab, m, name)

    again = m.run("up", name, "--no-provision", "--yes")  # a rerun converges: a real launch
    assert again.code == 0, again.err
    assert f"{name} is running" in again.err and "already running" not in again.err
    assert len(lab.aws(name)["instances"]) == 1
    assert lab.local_public_key(m.key(name)) == lab.ec2_public_key(name)
    assert m.run("down", name, "--yes").code == 0
    _assert_clean(lab, m, name)


@pytest.mark.parametrize("action", DOWN_POINTS)
def test_interrupted_down_says_what_remains_and_a_rerun_finishes(lab, action):
    name = f"id-{DOWN_POINTS.index(action)}"
    m = lab.machine()
    up = m.run("up", name, "--no-provision", "--yes")
    assert up.code == 0, up.err
    r = _interrupt_at(lab, m, action, ["down", name, "--yes"])
    assert r.code == 130, r.err
    assert "Traceback" not in r.err
    listed = lab.remains_in_aws(r.err)
    assert listed == lab.in_aws(name), r.err
    assert f"`dlenv down {name}`" in r.err
    again = m.run("down", name, "--yes")
    assert again.code == 0, again.err
    _assert_clean(lab, m, name)


def test_second_interrupt_during_rollback_still_says_what_remains(lab):
    name = "iu-twice"
    m = lab.machine()
    launch = lab.proxy.hold("RunInstances", barrier=True)
    terminate = lab.proxy.hold("TerminateInstances", barrier=True)
    proc = m.spawn("up", name, "--no-provision", "--yes")
    launch.wait_arrived()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    launch.release()
    terminate.wait_arrived()  # the rollback is terminating the instance: interrupt it too
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    terminate.release()
    r = lab.finish(proc)
    assert r.code == 130, r.err
    assert "Traceback" not in r.err
    assert f"rollback of {name} interrupted" in r.err
    listed = lab.remains_in_aws(r.err)
    have = lab.in_aws(name)
    # said from what this dlenv saw (AWS is not asked again after a second Ctrl-C): the key
    # pair and group that are there, and the instance whose termination was in flight
    assert listed["key_pairs"] == have["key_pairs"] == [f"dlenv-{name}"]
    assert listed["security_groups"] == have["security_groups"] and have["security_groups"]
    assert len(listed["instances"]) == 1 and "termination requested" in r.err
    assert f"private key {m.key(name)}" in r.err
    down = m.run("down", name, "--yes")
    assert down.code == 0, down.err
    _assert_clean(lab, m, name)


def test_a_launch_that_reaches_aws_after_the_interrupt_is_still_found(lab):
    """No barrier: the rollback's first look finds nothing (the held RunInstances has not been
    carried out yet); it keeps looking, bounded, for what the in-flight call creates."""
    name = "iu-late"
    m = lab.machine()
    hold = lab.proxy.hold("RunInstances")
    proc = m.spawn("up", name, "--no-provision", "--yes")
    hold.wait_arrived()
    proc.send_signal(signal.SIGINT)
    # the rollback has looked once, found nothing, and waits (bounded) for the instance
    proc.wait_for("checking whether the interrupted instance reached AWS")
    hold.release()
    r = lab.finish(proc)
    assert r.code == 130, r.err
    assert "checking whether the interrupted instance reached AWS" in r.err, r.err
    assert "rolled back: terminated i-" in r.err and "remains: nothing" in r.err, r.err
    _assert_clean(lab, m, name)
