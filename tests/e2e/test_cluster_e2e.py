"""A cluster from nothing and back to nothing through the real CLI: `up NAME --nodes 3`, `run`,
`status`, `down`, against moto's server and three systemd host containers on one Docker network
standing in for the three nodes (tests/clusterhosts.py routes each node to its own container).

Provisioning runs for real on all three at once (the `--count` runner), with the smallest stack
torch needs (base packages, the uv environment, CPU torch from the wheelhouse); then every node
has /etc/dlenv/cluster.env, `dlenv run` reaches each node's own container, and a real torchrun
(gloo) job spans the three: moto hands each node its container's address as its private IP, so
the rendezvous address dlenv writes (node 0's private IP) is one the containers really reach.
"""

# ruff: noqa: F811  (fixtures imported below are the tests' parameters)
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import clusterhosts
from awsfake import console_with_host_keys
from moto_placement import placement_groups  # noqa: F401  (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.hosts]

NAME = "tce"
NODES = [f"{NAME}-{k}" for k in range(3)]


ALL_REDUCE = """\
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
t = torch.ones(1) * (dist.get_rank() + 1)
dist.all_reduce(t)
print(f"rank {dist.get_rank()} of {dist.get_world_size()}: sum {t.item():.0f}")
dist.destroy_process_group()
"""


@pytest.fixture
def three_hosts(tmp_path: Path, monkeypatch: Any) -> Any:
    """Three containers; the next three private IPs moto hands out are their addresses."""
    from moto.ec2.models.subnets import Subnet

    cluster = clusterhosts.start(tmp_path, 3)
    addresses = [clusterhosts.address(h) for h in cluster.hosts]
    original = Subnet.get_available_subnet_ip

    def next_address(self: Any, instance: Any) -> str:
        return addresses.pop(0) if addresses else original(self, instance)

    monkeypatch.setattr(Subnet, "get_available_subnet_ip", next_address)
    yield cluster.hosts
    cluster.stop()


def wheelhouse() -> str:
    from docker_support import find_wheelhouse

    return str(find_wheelhouse())


def test_up_nodes_run_and_down(
    cli: Any, three_hosts: Any, placement_groups: dict[str, Any], monkeypatch: Any
) -> None:
    import moto.ec2.responses.general as general

    hosts = three_hosts
    monkeypatch.setattr(
        general, "SAMPLE_CONSOLE_OUTPUT", console_with_host_keys(hosts[0].host_keys)
    )
    state = Path(cli.env["DLENV_STATE_DIR"])
    cli.env.update(clusterhosts.wire(state, dict(zip(NODES, hosts, strict=True)), keys_for=(NAME,)))

    stack = [
        "--python",
        "uv",
        "--wheelhouse",
        wheelhouse(),
        "--only",
        "base-packages,python-env,pytorch",
    ]
    up = cli("up", NAME, "--nodes", "3", "--yes", *stack, timeout=1500)
    assert up.code == 0, up.err[-4000:]
    assert "host keys read from the instance console" in up.err, up.err[-3000:]
    assert "trusting on first use" not in up.err
    assert f"cluster {NAME}: 3 nodes provisioned" in up.err, up.err[-2000:]
    # every node knows its place: rank, node count, the rendezvous address (node 0's)
    envs = [h.exec("cat /etc/dlenv/cluster.env").stdout for h in hosts]
    for rank, text in enumerate(envs):
        assert f"DLENV_NODE_RANK={rank}" in text and "DLENV_NNODES=3" in text, text
    assert {line for t in envs for line in t.splitlines() if "MASTER_ADDR" in line} == {
        f"MASTER_ADDR={clusterhosts.address(hosts[0])}"
    }

    status = cli("status", NAME, "--json")
    assert json.loads(status.out)["clusters"] == [
        {"name": NAME, "nodes": 3, "running": 3, "state": "complete", "missing": []}
    ]
    # `dlenv run` (issue 15's other half) reaches each node's own container
    run = cli("run", NAME, "--", "hostname", "-I", timeout=300)
    assert run.code == 0, run.err[-2000:]
    for node, host in zip(NODES, hosts, strict=True):
        assert clusterhosts.address(host) in run.out + run.err, (node, run.out, run.err)
    # a real torchrun job across the three containers: gloo all-reduce of ranks 1 + 2 + 3
    for host in hosts:
        host.exec(
            f"mkdir -p ~/work && cat > ~/work/allreduce.py <<'EOF'\n{ALL_REDUCE}EOF",
            user="dlenv",
            check=True,
        )
    job = cli("run", NAME, "--", "dlenv-torchrun", "allreduce.py", timeout=600)
    assert job.code == 0, (job.out + job.err)[-3000:]
    for rank in range(3):
        assert f"rank {rank} of 3: sum 6" in job.out + job.err, job.out + job.err
    # a node is an environment: `dlenv ssh NAME-K` works on it unchanged
    one = cli("ssh", NODES[2], "--", "cat", "/etc/dlenv/cluster.env")
    assert one.code == 0 and "DLENV_NODE_RANK=2" in one.out, one.err

    down = cli("down", NAME, "--yes", "--discard-changes", timeout=600)
    assert down.code == 0, down.err[-2000:]
    assert f"cluster {NAME} removed: 3 node(s)" in down.err, down.err
    assert placement_groups == {}
    assert not list((state / "keys").glob(f"dlenv-{NAME}*"))
    assert cli("status", NAME).code != 0  # nothing of it is left
