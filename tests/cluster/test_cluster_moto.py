"""A named cluster as AWS describes it, through the real CLI against moto's server: nodes found by
their `dlenv:cluster` tag, and a partial cluster refused by `run` and `smoke-test --nodes` with
one line naming the node and the fix, before any SSH connection is tried."""

# ruff: noqa: F811  (fixtures imported below are the tests' parameters)
from __future__ import annotations

from typing import Any

import pytest

from awsfake import launch_cluster_nodes
from motocli import cli, moto_server  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.moto]


def test_a_partial_cluster_is_refused_by_run_and_smoke_test(cli: Any) -> None:
    launch_cluster_nodes(cli.endpoint, "part", [0, 2], nodes=3)
    for args in (["run", "part", "--", "hostname"], ["smoke-test", "part", "--nodes"]):
        res = cli(*args)
        assert res.code == 1, res.err
        assert "cluster part is partial: node part-1 (rank 1 of 3) is missing" in res.err
        assert "`dlenv down part`, then `dlenv up part --nodes 3`" in res.err
        assert "Traceback" not in res.err


def test_a_stopped_node_is_named_with_the_command_that_starts_it(cli: Any) -> None:
    import boto3

    ids = launch_cluster_nodes(cli.endpoint, "halt", [0, 1, 2], nodes=3)
    boto3.client("ec2", region_name="us-east-1", endpoint_url=cli.endpoint).stop_instances(
        InstanceIds=[ids[1]]
    )
    res = cli("run", "halt", "--node", "0", "--", "true")
    assert res.code == 1
    assert "cluster halt is partial: node halt-1 (rank 1) is stopped" in res.err, res.err
    assert "start it with `dlenv start halt-1`" in res.err


def test_no_such_cluster(cli: Any) -> None:
    res = cli("run", "nothere", "--", "true")
    assert res.code == 1 and "no cluster named 'nothere' in us-east-1" in res.err, res.err
    assert "dlenv up nothere --nodes N" in res.err
