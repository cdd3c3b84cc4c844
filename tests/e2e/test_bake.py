"""`dlenv ami bake` through the real CLI: moto's server for EC2, systemd host containers for the
machines (reached through `ssh_proxy_command`, as in the journey test).

The image itself is emulated the way AMIs work: the cleaned builder container is committed
(`docker commit`, the disk snapshot) and a new container starts from it (a new instance: fresh
host keys at boot, the launch key written by the harness like cloud-init would). `dlenv up`
must pick moto's baked image and then only run the per-instance steps on that container.
Failures at each stage must leave no builder, security group, key pair or image behind.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from awsfake import any_dlenv_resources, console_with_host_keys
from harness import hosts
from instancehost import wire

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.hosts]

BUILDER = "bake-e2e"
NOTHING = {"instances": [], "security_groups": [], "key_pairs": []}


def wheelhouse() -> str:
    from docker_support import find_wheelhouse

    return str(find_wheelhouse())


def point_at(cli, monkeypatch, host: hosts.TestHost, name: str) -> None:
    """Environment `name` is `host`: its console shows the host's keys, SSH reaches it."""
    import moto.ec2.responses.general as general

    monkeypatch.setattr(general, "SAMPLE_CONSOLE_OUTPUT", console_with_host_keys(host.host_keys))
    cli.env.update(wire(Path(cli.env["DLENV_STATE_DIR"]), host, name))


def baked_images(endpoint: str) -> list[dict]:
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint)
    return ec2.describe_images(
        Owners=["self"], Filters=[{"Name": "tag:dlenv:baked", "Values": ["true"]}]
    )["Images"]


@pytest.fixture
def started(tmp_path):
    """Start host containers on demand; all are removed at the end (images too)."""
    hosts.require_engine()
    hosts.ensure_images()
    made: list[hosts.TestHost] = []
    committed: list[str] = []

    def start(image: str = hosts.HOST_IMAGE) -> hosts.TestHost:
        h = hosts.start_host(image, work=tmp_path)
        made.append(h)
        return h

    start.committed = committed  # type: ignore[attr-defined]
    yield start
    for h in made:
        h.stop()
    for image in committed:
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True)


def commit(started, host: hosts.TestHost) -> str:
    """The AMI's disk: the cleaned builder as an image (what create_image snapshots)."""
    tag = f"dlenv-test/baked-{host.container[-8:]}"
    subprocess.run(["docker", "commit", host.container, tag], check=True, capture_output=True)
    started.committed.append(tag)
    return tag


def test_bake_then_up_runs_only_the_per_instance_steps(cli, started, monkeypatch):
    builder = started()
    point_at(cli, monkeypatch, builder, BUILDER)
    flags = ["--python", "uv", "--wheelhouse", wheelhouse(), "--idle-stop", "30"]
    bake = cli("ami", "bake", "--name", BUILDER, "--yes", "--json", *flags, timeout=1500)
    assert bake.code == 0, bake.err[-3000:]
    report = json.loads(bake.out)
    image_id = report["image_id"]
    assert "cleanup validated" in bake.err
    assert f"builder {BUILDER} removed" in bake.err
    assert any_dlenv_resources("us-east-1", cli.endpoint) == NOTHING

    # What the image holds: the stack, and nothing of the builder.
    tags = report["tags"]
    assert tags["dlenv:baked"] == "true" and tags["dlenv:python"] == "uv"
    assert tags["dlenv:base"] == "ubuntu-24.04" and tags["dlenv:user"] == hosts.USER
    assert tags["dlenv:torch"].startswith("2.") and tags["dlenv:gpu"] == "no"
    assert len(tags["dlenv:stack"]) == 12
    [image] = baked_images(cli.endpoint)
    assert image["ImageId"] == image_id
    listed = json.loads(cli("ami", "list", "--json").out)["images"]
    assert [(i["image_id"], i["stack_current"]) for i in listed] == [(image_id, True)]
    gone = builder.exec(
        "ls /etc/ssh/ssh_host_* /home/dlenv/.ssh/authorized_keys /etc/dlenv/jupyter-token "
        "/opt/dlenv/wheelhouse 2>&1; wc -c < /etc/machine-id"
    )
    assert "No such file" in gone.stdout and "ssh_host_ed25519_key " not in gone.stdout
    assert gone.stdout.strip().splitlines()[-1] == "0", gone.stdout
    build_token = builder.exec("cat /run/dlenv/bake-token").stdout.strip()
    assert len(build_token) == 64

    # A new instance from the image: only the per-instance steps are pending.
    instance = started(commit(started, builder))
    point_at(cli, monkeypatch, instance, "frombaked")
    up = cli("up", "frombaked", "--yes", "--no-provision", *flags, timeout=600)
    assert up.code == 0, up.err[-2000:]
    assert f"using baked image {image_id}" in up.err
    planned = cli("provision", "frombaked", "--plan", "--json", *flags, timeout=300)
    assert planned.code == 0, planned.err[-2000:]
    plan = json.loads(planned.out)
    states = {s["step"]: s["status"] for s in plan[0]["plan"]}
    pending = [n for n, s in states.items() if s == "pending"]
    assert pending == ["jupyterlab-service"], states
    t0 = time.monotonic()
    prov = cli("provision", "frombaked", "--json", *flags, timeout=600)
    seconds = time.monotonic() - t0
    assert prov.code == 0, prov.err[-2000:]
    assert json.loads(prov.out)[0]["applied"] == ["jupyterlab-service"]
    print(
        f"fresh provision {report['phases']['provision']:.1f}s ({len(report['applied'])} steps) "
        f"vs from the baked image {seconds:.1f}s (1 step)"
    )
    token = instance.exec("cat /etc/dlenv/jupyter-token").stdout.strip()
    assert len(token) == 64 and token != build_token
    assert instance.exec("systemctl is-active dlenv-jupyter").stdout.strip() == "active"

    # --no-baked starts from stock; rm removes the image and its snapshots.
    # the down guard (files in ~/work not synced down) has its own test: test_sync_down_guard
    assert cli("down", "frombaked", "--yes", "--discard-changes").code == 0
    rm = cli("ami", "rm", image_id, "--yes")
    assert rm.code == 0 and "snapshot" in rm.err, rm.err
    assert baked_images(cli.endpoint) == []


def test_bake_failing_on_the_host_leaves_nothing(cli, started, monkeypatch):
    """The builder turns out to run an unsupported OS: the bake fails after the launch, and the
    instance, security group and key pair it made are gone; no image exists."""
    builder = started(hosts.UNSUPPORTED_IMAGE)
    point_at(cli, monkeypatch, builder, BUILDER)
    bake = cli("ami", "bake", "--name", BUILDER, "--yes", "--python", "uv", timeout=600)
    assert bake.code == 1, bake.err[-2000:]
    assert "unsupported" in bake.err.lower() and "Traceback" not in bake.err
    assert f"builder {BUILDER} removed" in bake.err
    assert any_dlenv_resources("us-east-1", cli.endpoint) == NOTHING
    assert baked_images(cli.endpoint) == []


def _quick_bake(cli, started, monkeypatch) -> object:
    builder = started()
    point_at(cli, monkeypatch, builder, BUILDER)
    return cli(
        "ami", "bake", "--name", BUILDER, "--yes", "--python", "uv", "--only", "base-packages",
        timeout=900,
    )  # fmt: skip


def test_create_image_refused_by_aws_leaves_nothing(cli, started, monkeypatch):
    """CreateImage fails with AWS's own error code (an EC2 resource limit)."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.amis import AmiBackend

    def refuse(self, *args, **kwargs):
        raise EC2ClientError(
            "ResourceLimitExceeded", "You have exceeded an Amazon EC2 resource limit."
        )

    monkeypatch.setattr(AmiBackend, "create_image", refuse)
    bake = _quick_bake(cli, started, monkeypatch)
    assert bake.code == 1, bake.err[-2000:]
    assert "ResourceLimitExceeded" in bake.err and "Traceback" not in bake.err
    assert any_dlenv_resources("us-east-1", cli.endpoint) == NOTHING
    assert baked_images(cli.endpoint) == []


def test_image_that_fails_is_deregistered_with_its_snapshots(cli, started, monkeypatch):
    """EC2 reports the image `failed`: it is deregistered and its snapshot deleted."""
    import boto3
    from moto.ec2.models.amis import AmiBackend

    real = AmiBackend.create_image

    def failing(self, *args, **kwargs):
        ami = real(self, *args, **kwargs)
        ami.state = "failed"
        return ami

    monkeypatch.setattr(AmiBackend, "create_image", failing)
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=cli.endpoint)
    before = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    bake = _quick_bake(cli, started, monkeypatch)
    assert bake.code == 1, bake.err[-2000:]
    assert "could not create image" in bake.err and "failed" in bake.err
    assert "removed the unfinished image" in bake.err
    assert any_dlenv_resources("us-east-1", cli.endpoint) == NOTHING
    assert baked_images(cli.endpoint) == []
    after = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert after <= before, after - before
