"""Cluster knowledge without machines: cluster.env and hostfile rendering, the wrapper, bus
bandwidth math, the verdict, node selection and the refusals of bad input (no containers)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from dlenv.cloud.instances import Environment
from dlenv.errors import DlenvError, NotFoundError, UsageError
from dlenv.ops import cluster_smoke, nodes
from dlenv.ops.run import NodeOutcome, RunResult, remote_line, select
from dlenv.ssh.target import SshTarget
from dlenv_smoke.cluster import bus_bandwidth, loss_fell


def node(rank: int, addr: str) -> nodes.Node:
    return nodes.Node(
        rank, f"c-{rank}", SshTarget(host="127.0.0.1", user="u", port=2200 + rank), addr
    )


CLUSTER = [node(0, "10.0.0.5"), node(1, "10.0.0.6"), node(2, "10.0.0.7")]


def parse_env(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


def test_cluster_env_per_node_and_one_hostfile() -> None:
    files = nodes.render(CLUSTER, [8, 8, 8], cluster="train")
    for rank, f in enumerate(files):
        env = parse_env(f.cluster_env)
        assert env == {
            "DLENV_CLUSTER": "train",
            "DLENV_NODE_RANK": str(rank),
            "DLENV_NNODES": "3",
            "DLENV_GPUS_PER_NODE": "8",
            "DLENV_NPROC_PER_NODE": "8",
            "DLENV_RENDEZVOUS": "10.0.0.5:29500",
            "DLENV_NODE_ADDR": CLUSTER[rank].private_addr,
            "DLENV_HOSTFILE": "/etc/dlenv/hostfile",
            "MASTER_ADDR": "10.0.0.5",
            "MASTER_PORT": "29500",
        }
        assert f.hostfile == "10.0.0.5 slots=8\n10.0.0.6 slots=8\n10.0.0.7 slots=8\n"
        assert f.wrapper == nodes.WRAPPER_TEXT


def test_cpu_nodes_run_one_process_and_rendezvous_addr_overrides_node_0() -> None:
    files = nodes.render(CLUSTER, [0, 0, 0], rendezvous_addr="192.168.1.9", port=31000)
    env = parse_env(files[2].cluster_env)
    assert env["DLENV_GPUS_PER_NODE"] == "0" and env["DLENV_NPROC_PER_NODE"] == "1"
    assert env["DLENV_RENDEZVOUS"] == "192.168.1.9:31000" and env["MASTER_PORT"] == "31000"
    assert "DLENV_CLUSTER" not in env
    assert files[0].hostfile.splitlines()[0] == "10.0.0.5 slots=1"
    v6 = nodes.render(CLUSTER, [0, 0, 0], rendezvous_addr="fd00::1")
    assert parse_env(v6[0].cluster_env)["DLENV_RENDEZVOUS"] == "[fd00::1]:29500"


def test_cluster_env_is_what_a_shell_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "cluster.env"
    path.write_text(nodes.render(CLUSTER, [4, 4, 4], cluster="c1")[1].cluster_env)
    out = subprocess.run(
        ["sh", "-c", f'set -a; . {shlex.quote(str(path))}; echo "$DLENV_NODE_RANK $MASTER_ADDR"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "1 10.0.0.5"


@pytest.mark.parametrize(
    "bad",
    ["10.0.0.1;reboot", "$(id)", "a b", "", "x\nMASTER_ADDR=evil", "-oProxyCommand=x"],
)
def test_hostile_addresses_are_refused_everywhere(bad: str) -> None:
    with pytest.raises(UsageError):
        nodes.render(CLUSTER, [0, 0, 0], rendezvous_addr=bad)
    with pytest.raises(UsageError):
        nodes.render([node(0, bad)], [0])


def test_bad_counts_ports_and_rank_order_are_refused() -> None:
    with pytest.raises(UsageError, match="out of range"):
        nodes.render(CLUSTER, [0, 0, 0], port=70000)
    with pytest.raises(UsageError, match=r"not 0\.\.2 in order"):
        nodes.render([CLUSTER[1], CLUSTER[0], CLUSTER[2]], [0, 0, 0])
    with pytest.raises(UsageError, match="GPU count"):
        nodes.render(CLUSTER, [0, -1, 0])
    with pytest.raises(UsageError, match="not a valid name"):
        nodes.render(CLUSTER, [0, 0, 0], cluster="x;y")


def test_wrapper_starts_torchrun_with_the_cluster_values(tmp_path: Path) -> None:
    """The wrapper under sh with cluster.env and a stand-in torchrun that prints its argv."""
    env_file = tmp_path / "cluster.env"
    env_file.write_text(nodes.render(CLUSTER, [2, 2, 2])[1].cluster_env)
    wrapper = tmp_path / "dlenv-torchrun"
    wrapper.write_text(nodes.WRAPPER_TEXT.replace("/etc/dlenv/cluster.env", str(env_file)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "torchrun").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    (bin_dir / "torchrun").chmod(0o755)
    out = subprocess.run(
        ["sh", str(wrapper), "train.py", "--lr", "0.1"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
    ).stdout.split()
    assert out == [
        "--nnodes", "3", "--node-rank", "1", "--nproc-per-node", "2",
        "--rdzv-backend", "static", "--master-addr", "10.0.0.5", "--master-port", "29500",
        "--local-addr", "10.0.0.6", "--max-restarts", "0", "train.py", "--lr", "0.1",
    ]  # fmt: skip


def test_bus_bandwidth_is_nccl_tests_formula() -> None:
    # 1 GB in 1 s over 8 ranks: algbw 1 GB/s, busbw 2*7/8 = 1.75 GB/s
    assert bus_bandwidth(10**9, 1.0, 8) == pytest.approx(1.75e9)
    assert bus_bandwidth(10**9, 0.5, 2) == pytest.approx(2e9)  # n=2: factor 1
    assert bus_bandwidth(10**9, 1.0, 1) == 0  # one rank moves nothing over a link
    with pytest.raises(ValueError):
        bus_bandwidth(1, 0, 2)


def test_loss_must_clearly_fall() -> None:
    assert loss_fell([5, 4, 3, 2, 1, 0.5])
    assert not loss_fell([1, 1, 1, 1, 1, 0.99])
    assert not loss_fell([3, 2, 1])  # too few steps to tell


def report(device: str = "cpu", busbw: float = 5.0, nnodes: int = 3, **train: object) -> dict:  # type: ignore[type-arg]
    t = {"loss_fell": True, "replicas_in_sync": True, "first_loss": 3.0, "last_loss": 0.1}
    t.update(train)
    return {
        "backend": "nccl" if device == "cuda" else "gloo",
        "device": device,
        "world_size": nnodes * (8 if device == "cuda" else 1),
        "nnodes": nnodes,
        "procs_per_node": 8 if device == "cuda" else 1,
        "torch": "2.13.0",
        "allreduce": {"sum_verified": True, "busbw_gbps": busbw, "sizes": []},
        "train": {"steps": 30, **t},
    }


OK = RunResult([NodeOutcome(0, "c-0", 0), NodeOutcome(1, "c-1", 0)])
P5 = cluster_smoke.Network("p5.48xlarge", 3200.0)


def test_verdicts() -> None:
    cpu = cluster_smoke.judge(report(), OK, device="auto", network=P5)
    assert (cpu["verdict"], cpu["exit_code"]) == ("cpu-only", 10)
    assert cpu["bandwidth"]["grade"] is None  # the CPU path is never graded
    assert "CPU path" in cluster_smoke.render_text(cpu)
    assert cluster_smoke.judge(report(), OK, device="cpu", network=None)["exit_code"] == 0

    good = cluster_smoke.judge(report("cuda", busbw=2600), OK, device="auto", network=P5)
    assert (good["verdict"], good["exit_code"], good["bandwidth"]["grade"]) == ("pass", 0, "good")
    assert "81% of p5.48xlarge's 3200 Gbps" in cluster_smoke.render_text(good)
    low = cluster_smoke.judge(report("cuda", busbw=800), OK, device="auto", network=P5)
    assert (low["verdict"], low["bandwidth"]["grade"]) == ("pass", "low")
    slow = cluster_smoke.judge(report("cuda", busbw=100), OK, device="auto", network=P5)
    assert slow["verdict"] == "fail" and "is EFA in use?" in slow["reasons"][0]


def test_failures_are_named() -> None:
    flat = cluster_smoke.judge(report(loss_fell=False), OK, device="auto", network=None)
    assert flat["exit_code"] == 1 and "did not fall" in flat["reasons"][0]
    lost = RunResult([NodeOutcome(0, "c-0", 0), NodeOutcome(1, "c-1", 255, "cannot reach")])
    gone = cluster_smoke.judge(None, lost, device="auto", network=None)
    assert gone["reasons"][0] == "c-1 exited 255: cannot reach"
    assert "no report came back" in gone["reasons"][1]
    assert cluster_smoke.verdict_line(gone).startswith("FAIL: c-1 exited 255")


def test_worst_exit_code_and_node_selection() -> None:
    assert RunResult([NodeOutcome(0, "a", 0), NodeOutcome(1, "b", 3)]).exit_code == 3
    assert RunResult([NodeOutcome(0, "a", 0)], interrupted=True).exit_code == 130
    assert select(CLUSTER, 1, "c") == [CLUSTER[1]]
    with pytest.raises(UsageError, match=r"--node 3: c has nodes 0..2"):
        select(CLUSTER, 3, "c")


def test_remote_line_sets_up_the_environment_then_runs_the_words() -> None:
    line = remote_line(["torchrun", "--nnodes", "$DLENV_NNODES", "x.py"])
    assert line.index("/etc/profile.d/dlenv-") < line.index("set -a; . /etc/dlenv/cluster.env")
    assert line.rstrip().endswith("cd ~/work || exit 1\ntorchrun --nnodes $DLENV_NNODES x.py")
    with pytest.raises(UsageError):
        remote_line([])


def env(
    name: str, rank: int, nodes_tag: int = 3, state: str = "running", **tags: str
) -> Environment:
    return Environment.from_instance(
        {
            "InstanceId": f"i-{rank:017d}",
            "InstanceType": "p5.48xlarge",
            "State": {"Name": state},
            "PublicIpAddress": f"54.0.0.{rank + 1}",
            "PrivateIpAddress": f"172.31.0.{rank + 1}",
            "Tags": [
                {"Key": "dlenv:name", "Value": f"{name}-{rank}"},
                {"Key": "dlenv:cluster", "Value": name},
                {"Key": "dlenv:rank", "Value": str(rank)},
                {"Key": "dlenv:nodes", "Value": str(nodes_tag)},
                *({"Key": k, "Value": v} for k, v in tags.items()),
            ],
        }
    )


class FakeAws:
    region_name = "us-east-1"


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DLENV_STATE_DIR", str(tmp_path / "state"))
    from dlenv.cloud.keys import private_key_path

    for rank in range(3):
        key = private_key_path(f"train-{rank}")
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text("key")
        key.chmod(0o600)
    return tmp_path


def _cluster(monkeypatch: pytest.MonkeyPatch, envs: list[Environment]) -> list[nodes.Node]:
    from dlenv import config

    monkeypatch.setattr("dlenv.cloud.instances.list_environments", lambda aws, name=None: envs)
    return nodes.for_cluster(FakeAws(), "train", config.load({}))  # type: ignore[arg-type]


def test_for_cluster_orders_by_rank_and_uses_private_addresses(
    keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = _cluster(
        monkeypatch, [env("train", 2), env("train", 0), env("train", 1), env("other", 0)]
    )
    assert [(n.rank, n.name, n.private_addr) for n in found] == [
        (0, "train-0", "172.31.0.1"),
        (1, "train-1", "172.31.0.2"),
        (2, "train-2", "172.31.0.3"),
    ]
    assert found[0].target.host == "54.0.0.1" and found[0].target.host_key_alias == "dlenv-train-0"


def test_a_partial_cluster_is_refused_naming_the_node(
    keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DlenvError, match=r"node train-1 \(rank 1 of 3\) is missing") as missing:
        _cluster(monkeypatch, [env("train", 0), env("train", 2)])
    assert "dlenv up train --nodes 3" in (missing.value.hint or "")
    with pytest.raises(DlenvError, match=r"node train-2 \(rank 2\) is stopped") as stopped:
        _cluster(monkeypatch, [env("train", 0), env("train", 1), env("train", 2, state="stopped")])
    assert stopped.value.hint == "start it with `dlenv start train-2`"
    with pytest.raises(NotFoundError, match="no cluster named 'train'"):
        _cluster(monkeypatch, [env("other", 0)])
    with pytest.raises(DlenvError, match="dlenv:rank='x'"):
        _cluster(monkeypatch, [env("train", 0), _retag(env("train", 1))])


def _retag(e: Environment) -> Environment:
    e.tags["dlenv:rank"] = "x"
    return e
