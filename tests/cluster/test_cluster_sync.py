"""`dlenv sync NAME --up` on a cluster copies to every node, through the real CLI: a cluster as
moto describes it (two instances tagged `dlenv:cluster`), each node routed to its own host
container (tests/clusterhosts.py), host keys known under the nodes' aliases as `up` records them."""

# ruff: noqa: F811  (fixtures imported below are the tests' parameters)
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import clusterhosts
from awsfake import launch_cluster_nodes
from motocli import cli, moto_server  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.moto, pytest.mark.hosts, pytest.mark.docker]
NAME = "csync"


@pytest.fixture
def two_hosts(tmp_path: Path) -> Any:
    cluster = clusterhosts.start(tmp_path, 2)
    yield cluster.hosts
    cluster.stop()


def test_sync_up_reaches_every_node_and_down_is_refused(cli: Any, two_hosts: Any) -> None:
    launch_cluster_nodes(
        cli.endpoint, NAME, [0, 1], nodes=2, user="dlenv", instance_type="g5.12xlarge"
    )
    state = Path(cli.env["DLENV_STATE_DIR"])
    nodes = {f"{NAME}-{k}": h for k, h in enumerate(two_hosts)}
    cli.env.update(clusterhosts.wire(state, nodes))
    (state / "known_hosts").write_text(
        "".join(
            f"dlenv-{node} {' '.join(key.split()[:2])}\n"
            for node, host in nodes.items()
            for key in host.host_keys
        )
    )
    project = cli.home / "project"
    project.mkdir()
    (project / "train.py").write_text("print('hello from every node')\n")

    up = cli("sync", NAME, str(project), "--up", timeout=300)
    assert up.code == 0, up.err[-3000:]
    for node, host in nodes.items():
        assert f"-> {node}:" in up.err, up.err
        got = host.exec("cat /home/dlenv/work/train.py", user="dlenv")
        assert got.stdout == "print('hello from every node')\n", (node, got.stderr)

    down = cli("sync", NAME, str(project), "--down")
    assert down.code != 0 and "csync is a cluster: bring files down from one of" in down.err
    assert f"dlenv sync {NAME}-0 --down" in down.err and "Traceback" not in down.err
