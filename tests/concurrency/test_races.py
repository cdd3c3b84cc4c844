"""Parallel `up`s and `down`s of one name and of many, from one machine and from two.

The proxy delays every AWS call (the windows between "is there one?" and "create it" become
wide, as on a slow link) or holds one call of one process, so that the interleaving each test
is about really happens.
"""

from __future__ import annotations

import time

import pytest


def test_two_ups_of_one_name_on_one_machine_make_one_instance(lab):
    """5 tries: the second `up` waits for the first (the environment's lock), then finds its
    instance; one key pair; the local private key is the one EC2 holds (never overwritten)."""
    m = lab.machine()
    lab.proxy.delay = 0.01
    for attempt in range(5):
        name = f"rc-same-{attempt}"
        procs = [m.spawn("up", name, "--no-provision", "--yes") for _ in range(2)]
        results = [lab.finish(p) for p in procs]
        for r in results:
            assert r.code == 0, r.err
        launched = [r for r in results if f"{name} is running: i-" in r.err]
        waited = [r for r in results if "already running" in r.err]
        assert len(launched) == 1 and len(waited) == 1, [r.err for r in results]
        have = lab.aws(name)
        assert len(have["instances"]) == 1 and have["key_pairs"] == [f"dlenv-{name}"]
        assert lab.local_public_key(m.key(name)) == lab.ec2_public_key(name)
    lab.proxy.delay = 0
    r = m.run("down", *[f"rc-same-{i}" for i in range(5)], "--yes")
    assert r.code == 0, r.err
    for attempt in range(5):
        assert lab.aws(f"rc-same-{attempt}") == lab.NOTHING


def test_a_waiting_up_says_who_holds_the_lock(lab):
    name = "rc-wait"
    m = lab.machine()
    hold = lab.proxy.hold("RunInstances")
    first = m.spawn("up", name, "--no-provision", "--yes")
    hold.wait_arrived()
    second = m.spawn("up", name, "--no-provision", "--yes")
    second.wait_for(f"waiting for another dlenv working on environment {name}")
    hold.release()
    one, two = lab.finish(first), lab.finish(second)
    assert one.code == 0 and two.code == 0, (one.err, two.err)
    assert f"waiting for another dlenv working on environment {name}" in two.err
    assert f"up {name}" in two.err  # names the holder's command
    assert "already running" in two.err
    assert len(lab.aws(name)["instances"]) == 1
    assert m.run("down", name, "--yes").code == 0


def test_two_machines_launching_one_name_keep_one_instance(lab):
    """Both machines hold the key (imported), the key pair and group exist, no instance: both
    pass every check and both run RunInstances. The tag check after it keeps the earlier one;
    the loser terminates only its own instance and says so in one line."""
    name = "rc-two"
    a, b = lab.machine(), lab.machine()
    assert a.run("up", name, "--no-provision", "--yes").code == 0
    imported = b.run("ssh-key", "import", name, str(a.key(name)))
    assert imported.code == 0, imported.err
    [first] = lab.aws(name)["instances"]
    lab.ec2().terminate_instances(InstanceIds=[first])  # e.g. terminated in the console

    hold = lab.proxy.hold("RunInstances")
    loser = a.spawn("up", name, "--no-provision", "--yes")
    hold.wait_arrived()  # a passed every check; its RunInstances is on the way
    winner = b.run("up", name, "--no-provision", "--yes")
    assert winner.code == 0, winner.err
    [kept] = lab.aws(name)["instances"]
    time.sleep(1.1)  # EC2's LaunchTime has a one-second resolution
    hold.release()
    lost = lab.finish(loser)
    assert lost.code == 1, lost.err
    errors = [ln for ln in lost.err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, lost.err
    said = f"another dlenv launched {name} at the same time ({kept}); this launch was undone: "
    assert f"{said}terminated i-" in errors[0], lost.err
    assert "Traceback" not in lost.err
    have = lab.aws(name)
    assert have["instances"] == [kept]  # the loser's instance is gone, the winner's kept
    assert have["key_pairs"] == [f"dlenv-{name}"] and len(have["security_groups"]) == 1
    assert lab.local_public_key(b.key(name)) == lab.ec2_public_key(name)
    assert b.run("down", name, "--yes").code == 0
    assert lab.aws(name) == lab.NOTHING


def test_a_key_pair_created_meanwhile_by_another_machine_undoes_this_launch(lab):
    """Machine A checks (no key pair), generates its key; B imports its own key pair first:
    A's ImportKeyPair is a Duplicate. A deletes only what it created (its local key)."""
    name = "rc-dup"
    a, b = lab.machine(), lab.machine()
    hold = lab.proxy.hold("ImportKeyPair")
    loser = a.spawn("up", name, "--no-provision", "--yes")
    hold.wait_arrived()
    assert a.key(name).exists()  # generated locally, not yet in EC2
    winner = b.run("up", name, "--no-provision", "--yes")
    assert winner.code == 0, winner.err
    hold.release()
    lost = lab.finish(loser)
    assert lost.code == 1, lost.err
    said = (
        f"another dlenv is launching {name} at the same time (key pair dlenv-{name} appeared); "
        f"this launch was undone: deleted the local key {a.key(name)}"
    )
    assert said in lost.err, lost.err
    assert not a.key(name).exists()
    have = lab.aws(name)
    assert len(have["instances"]) == 1 and have["key_pairs"] == [f"dlenv-{name}"]
    assert lab.local_public_key(b.key(name)) == lab.ec2_public_key(name)
    assert b.run("down", name, "--yes").code == 0
    assert lab.aws(name) == lab.NOTHING


def test_a_group_created_meanwhile_by_another_machine_undoes_this_launch(lab):
    """Both machines hold the key and the key pair exists (`down --keep-key`); A's
    CreateSecurityGroup comes second: a Duplicate. A created nothing, so it removes nothing
    (the key pair and group B uses stay) and says so."""
    name = "rc-dupsg"
    a, b = lab.machine(), lab.machine()
    assert a.run("up", name, "--no-provision", "--yes").code == 0
    assert b.run("ssh-key", "import", name, str(a.key(name))).code == 0
    assert a.run("down", name, "--keep-key", "--yes").code == 0
    assert lab.aws(name)["key_pairs"] == [f"dlenv-{name}"] and a.key(name).exists()
    hold = lab.proxy.hold("CreateSecurityGroup")
    loser = a.spawn("up", name, "--no-provision", "--yes")
    hold.wait_arrived()
    winner = b.run("up", name, "--no-provision", "--yes")
    assert winner.code == 0, winner.err
    hold.release()
    lost = lab.finish(loser)
    assert lost.code == 1, lost.err
    said = (
        f"another dlenv is launching {name} at the same time (security group dlenv-{name} "
        "appeared); this launch was undone: it had created nothing"
    )
    assert said in lost.err, lost.err
    have = lab.aws(name)
    assert len(have["instances"]) == 1 and len(have["security_groups"]) == 1
    assert have["key_pairs"] == [f"dlenv-{name}"] and a.key(name).exists()
    assert b.run("down", name, "--yes").code == 0
    assert lab.aws(name) == lab.NOTHING


def test_ten_parallel_ups_of_different_names(lab):
    m = lab.machine()
    lab.proxy.delay = 0.01
    names = [f"rc-many-{i}" for i in range(10)]
    procs = [m.spawn("up", n, "--no-provision", "--yes") for n in names]
    results = [lab.finish(p, 240) for p in procs]
    lab.proxy.delay = 0
    for r in results:
        assert r.code == 0, r.err
    for n in names:
        assert len(lab.aws(n)["instances"]) == 1
    include = m.include()
    for n in names:  # no entry lost to a concurrent rewrite of the include
        assert f"Host dlenv-{n}\n" in include, include
    r = m.run("down", *names, "--yes")
    assert r.code == 0, r.err
    for n in names:
        assert lab.aws(n) == lab.NOTHING
        assert f"Host dlenv-{n}\n" not in m.include()


def test_down_during_up_waits_then_removes_everything(lab):
    name = "rc-downup"
    m = lab.machine()
    hold = lab.proxy.hold("RunInstances")
    up = m.spawn("up", name, "--no-provision", "--yes")
    hold.wait_arrived()
    down = m.spawn("down", name, "--yes")
    down.wait_for(f"waiting for another dlenv working on environment {name}")
    time.sleep(0.5)
    assert down.poll() is None  # still waiting for the lock `up` holds
    hold.release()
    upped, downed = lab.finish(up), lab.finish(down)
    assert upped.code == 0, upped.err
    assert downed.code == 0, downed.err
    assert f"waiting for another dlenv working on environment {name}" in downed.err
    assert f"{name} removed: instance i-" in downed.err
    assert lab.aws(name) == lab.NOTHING
    assert not m.key(name).exists()
    assert f"Host dlenv-{name}\n" not in m.include()


@pytest.mark.parametrize("bad", ["known_hosts", "ssh_config"])
def test_down_finishes_whatever_local_file_is_corrupt(lab, bad):
    name = f"rc-corrupt-{bad.replace('_', '')}"
    m = lab.machine()
    assert m.run("up", name, "--no-provision", "--yes").code == 0
    path = m.state / bad
    before = path.read_bytes() if path.exists() else f"dlenv-{name} ssh-ed25519 AAAA\n".encode()
    path.write_bytes(b"\xff\xfe\x00\x9c garbage \x80\n" + before + b"\xc3\x28 [\n")
    r = m.run("down", name, "--yes")
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    assert lab.aws(name) == lab.NOTHING
    assert not m.key(name).exists()
    warnings = [ln for ln in r.err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and str(path) in warnings[0], r.err  # names the bad file


def test_down_of_several_names_reports_each(lab):
    m = lab.machine()
    assert m.run("up", "rc-multi", "--count", "2", "--no-provision", "--yes").code == 0
    r = m.run("down", "rc-multi-1", "rc-nosuch", "rc-multi-2", "--yes")
    assert r.code == 1, r.err
    assert "rc-multi-1 removed: instance i-" in r.err
    assert "rc-multi-2 removed: instance i-" in r.err
    assert "rc-nosuch: not found" in r.err
    assert "error: 1 of 3 environments not removed: rc-nosuch (not found)" in r.err
    assert lab.aws("rc-multi-1") == lab.aws("rc-multi-2") == lab.NOTHING


def test_every_launch_carries_one_launch_id(lab):
    """The id tags the instance, its volume, the key pair and the group it created, and is the
    RunInstances ClientToken (moto ignores ClientToken, so only the request is checked)."""
    name = "rc-token"
    m = lab.machine()
    assert m.run("up", name, "--no-provision", "--yes").code == 0
    [(_, run)] = [(a, f) for a, f in lab.proxy.requests if a == "RunInstances"]
    ec2 = lab.ec2()
    [inst] = [
        i
        for r in ec2.describe_instances(Filters=[{"Name": "tag:dlenv:name", "Values": [name]}])[
            "Reservations"
        ]
        for i in r["Instances"]
    ]
    launch_id = {t["Key"]: t["Value"] for t in inst["Tags"]}["dlenv:launch"]
    assert len(launch_id) == 32
    assert run["ClientToken"] == [f"dlenv-{launch_id}-1"]
    [pair] = ec2.describe_key_pairs(KeyNames=[f"dlenv-{name}"])["KeyPairs"]
    [group] = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"dlenv-{name}"]}]
    )["SecurityGroups"]
    volumes = ec2.describe_volumes(Filters=[{"Name": "tag:dlenv:launch", "Values": [launch_id]}])
    for tagged in (pair, group):
        assert {t["Key"]: t["Value"] for t in tagged["Tags"]}["dlenv:launch"] == launch_id
    assert volumes["Volumes"]
    assert m.run("down", name, "--yes").code == 0


def test_the_name_contest_has_one_winner_for_every_contestant(lab, monkeypatch):
    """Instances launched in the same second: the rule (LaunchTime, then instance id) gives
    every contestant the same single winner."""
    from dlenv.cloud import launch
    from dlenv.cloud.session import Aws

    name = "rc-contest"
    ec2 = lab.ec2()
    image = ec2.describe_images(Owners=["self", "amazon"])["Images"][0]["ImageId"]
    tags = [{"Key": "dlenv:name", "Value": name}]
    made = [
        ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]
        for _ in range(3)
    ]
    monkeypatch.setenv("AWS_ENDPOINT_URL", lab.endpoint)
    aws = Aws(region="us-east-1")
    verdicts = {
        i["InstanceId"]: launch.contest_winner(aws, name, i["InstanceId"], i["LaunchTime"])
        for i in made
    }
    winners = [i for i, beaten_by in verdicts.items() if beaten_by is None]
    assert len(winners) == 1
    assert {v for v in verdicts.values() if v is not None} == set(winners)
    ec2.terminate_instances(InstanceIds=[i["InstanceId"] for i in made])
