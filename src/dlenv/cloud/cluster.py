"""AWS resources of a cluster (`dlenv up NAME --nodes N`): placement group, cluster security group,
EFA network interfaces, and the nodes found by their tags.

A cluster is N instances launched by one RunInstances call into one cluster placement group
(`dlenv-NAME`, strategy cluster: one zone, one network spine), sharing the user's SSH group
(`dlenv-NAME`, as for one environment) and a cluster group (`dlenv-cluster-NAME`) whose only rule
admits all traffic from members of itself: torchrun's rendezvous, NCCL/gloo and EFA's SRD traffic
flow between nodes, nothing else comes in. Each node is an ordinary environment `NAME-K` (tag
dlenv:name) that also carries dlenv:cluster, dlenv:rank and dlenv:nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from dlenv.cloud import shapes
from dlenv.cloud.aws_errors import error_code, translated
from dlenv.cloud.instances import LIVE_STATES, TAG_NAME, Environment
from dlenv.cloud.network import create_group
from dlenv.cloud.session import Aws

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import PlacementGroupTypeDef, SecurityGroupTypeDef, TagTypeDef

    from dlenv.cloud.launch import Launched

TAG_CLUSTER = "dlenv:cluster"
TAG_RANK = "dlenv:rank"
TAG_NODES = "dlenv:nodes"
TAG_EFA = "dlenv:efa"
"""yes/no: the nodes were launched with an EFA interface (a later `up` provisions to match)."""


def node_name(cluster: str, rank: int) -> str:
    """`NAME-K`: the environment name of node K (what `dlenv ssh`, `stop`, `jupyter` take)."""
    return f"{cluster}-{rank}"


def placement_group_name(cluster: str) -> str:
    return f"dlenv-{cluster}"


def cluster_group_name(cluster: str) -> str:
    return f"dlenv-cluster-{cluster}"


# ---- placement group --------------------------------------------------------------------------
def find_placement_group(aws: Aws, cluster: str) -> PlacementGroupTypeDef | None:
    """The cluster's placement group, or None (a name that does not exist is not an error)."""
    import botocore.exceptions

    with translated(region=aws.region_name):
        try:
            groups = aws.ec2.describe_placement_groups(GroupNames=[placement_group_name(cluster)])[
                "PlacementGroups"
            ]
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in {"InvalidPlacementGroup.Unknown", "InvalidGroup.NotFound"}:
                return None
            raise
    live = [g for g in groups if g.get("State") not in {"deleting", "deleted"}]
    return live[0] if live else None


def create_placement_group(aws: Aws, cluster: str, tags: list[TagTypeDef]) -> str:
    """Create `dlenv-NAME` with strategy cluster (all nodes on one low-latency network segment).

    A Duplicate means another dlenv is creating the same cluster: ConcurrentLaunchError, and the
    caller undoes its launch (the other keeps the group).
    """
    import botocore.exceptions

    from dlenv.cloud.launch import ConcurrentLaunchError

    name = placement_group_name(cluster)
    with translated(region=aws.region_name):
        try:
            aws.ec2.create_placement_group(
                GroupName=name,
                Strategy="cluster",
                TagSpecifications=[{"ResourceType": "placement-group", "Tags": tags}],
            )
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "InvalidPlacementGroup.Duplicate":
                raise ConcurrentLaunchError(cluster, f"placement group {name} appeared") from exc
            raise
    return name


def delete_placement_group(aws: Aws, cluster: str) -> bool:
    """Delete the cluster's placement group; False when it was not there."""
    import botocore.exceptions

    if find_placement_group(aws, cluster) is None:
        return False
    with translated(region=aws.region_name):
        try:
            aws.ec2.delete_placement_group(GroupName=placement_group_name(cluster))
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in {"InvalidPlacementGroup.Unknown", "InvalidGroup.NotFound"}:
                raise
            return False
    return True


# ---- cluster security group -------------------------------------------------------------------
def find_cluster_group(aws: Aws, cluster: str) -> SecurityGroupTypeDef | None:
    """The cluster group, found by name *and* the dlenv:cluster tag (an environment named
    `cluster-NAME` has an SSH group of the same name, without that tag)."""
    with translated(region=aws.region_name):
        groups = aws.ec2.describe_security_groups(
            Filters=[
                shapes.filter("group-name", cluster_group_name(cluster)),
                shapes.filter(f"tag:{TAG_CLUSTER}", cluster),
            ]
        )["SecurityGroups"]
    return groups[0] if groups else None


def create_cluster_group(aws: Aws, cluster: str, vpc_id: str, tags: list[TagTypeDef]) -> str:
    """Create `dlenv-cluster-NAME`: its one ingress rule admits all traffic from itself."""
    description = f"dlenv cluster {cluster}: all traffic between its nodes only"
    gid = create_group(aws, cluster_group_name(cluster), vpc_id, description, tags, cluster)
    with translated(region=aws.region_name):
        aws.ec2.authorize_security_group_ingress(
            GroupId=gid,
            IpPermissions=[
                {
                    "IpProtocol": "-1",
                    "UserIdGroupPairs": [
                        {"GroupId": gid, "Description": "dlenv: the cluster's own nodes"}
                    ],
                }
            ],
        )
    return gid


# ---- EFA ----------------------------------------------------------------------------------------
def network_interfaces(subnet: str, groups: list[str], efa: bool) -> list[dict[str, Any]]:
    """The primary interface as RunInstances' NetworkInterfaces: an EFA one when `efa`.

    One EFA interface, on network card 0, so the node keeps its auto-assigned public IP (AWS
    assigns one only to an instance launched with a single interface). Types with several
    network cards (p4d: 4, p5: 32) reach their full EFA bandwidth with one EFA per card; that
    needs private addressing (a bastion or SSM as ssh_proxy_command) and is not done here.
    """
    return [
        {
            "DeviceIndex": 0,
            "NetworkCardIndex": 0,
            "SubnetId": subnet,
            "Groups": groups,
            "AssociatePublicIpAddress": True,
            "DeleteOnTermination": True,
            **({"InterfaceType": "efa"} if efa else {}),
        }
    ]


# ---- nodes --------------------------------------------------------------------------------------
NodeState = Literal["complete", "partial", "empty"]


@dataclass(frozen=True)
class ClusterView:
    """A cluster as AWS shows it: its live nodes by rank, and how many it was launched with."""

    name: str
    nodes: list[Environment]
    expected: int
    """The dlenv:nodes tag (the size it was launched with); 0 when no node is left to say."""

    @property
    def running(self) -> list[Environment]:
        return [e for e in self.nodes if e.state == "running"]

    @property
    def state(self) -> NodeState:
        if not self.nodes:
            return "empty"
        return "complete" if len(self.running) == self.expected else "partial"

    def missing_ranks(self) -> list[int]:
        have = {rank_of(e) for e in self.running}
        return [r for r in range(self.expected) if r not in have]

    def summary(self) -> str:
        """`cluster NAME: 3/3 nodes running`, plus which ranks are lost or not running."""
        line = f"cluster {self.name}: {len(self.running)}/{self.expected} nodes running"
        missing = self.missing_ranks()
        if missing:
            names = ", ".join(node_name(self.name, r) for r in missing)
            line += f" (partial: {names} lost or not running)"
        return line


def rank_of(env: Environment) -> int:
    """The node's rank tag (-1 when missing or not a number: a tag is anyone's to write)."""
    try:
        return int(env.tags.get(TAG_RANK, "-1"))
    except ValueError:
        return -1


def list_nodes(
    aws: Aws, cluster: str | None = None, *, launch_id: str | None = None
) -> list[Environment]:
    """Live instances of one cluster (or of every cluster), by tag, sorted by rank.

    A node may lack dlenv:name for the moment between RunInstances and its naming: it is found
    here all the same (by dlenv:cluster), which is what a rollback needs.
    """
    from dlenv.cloud.launch import TAG_LAUNCH

    filters = [
        shapes.filter("instance-state-name", *LIVE_STATES),
        shapes.filter(f"tag:{TAG_CLUSTER}", cluster)
        if cluster
        else shapes.filter("tag-key", TAG_CLUSTER),
    ]
    if launch_id:
        filters.append(shapes.filter(f"tag:{TAG_LAUNCH}", launch_id))
    nodes: list[Environment] = []
    with translated(region=aws.region_name):
        for page in aws.ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                nodes.extend(Environment.from_instance(i) for i in reservation["Instances"])
    return sorted(nodes, key=lambda e: (e.tags.get(TAG_CLUSTER, ""), rank_of(e), e.instance_id))


def view(cluster: str, nodes: list[Environment]) -> ClusterView:
    """The ClusterView of one cluster's nodes (as list_nodes returned them)."""
    mine = [e for e in nodes if e.tags.get(TAG_CLUSTER) == cluster]
    sizes = [int(e.tags[TAG_NODES]) for e in mine if e.tags.get(TAG_NODES, "").isdigit()]
    return ClusterView(cluster, mine, max(sizes, default=0))


def name_nodes(aws: Aws, cluster: str, instances: list[Launched]) -> list[str]:
    """Give each launched instance its node name and rank (its AmiLaunchIndex: 0..N-1).

    One RunInstances call tags every instance alike; the per-node tags follow at once.
    """
    ids: list[str] = []
    with translated(region=aws.region_name):
        for inst in sorted(instances, key=lambda i: i.launch_index):
            rank = len(ids)
            name = node_name(cluster, rank)
            aws.ec2.create_tags(
                Resources=[inst.instance_id],
                Tags=[
                    {"Key": TAG_NAME, "Value": name},
                    {"Key": "Name", "Value": f"dlenv-{name}"},
                    {"Key": TAG_RANK, "Value": str(rank)},
                ],
            )
            ids.append(inst.instance_id)
    return ids


def terminate(aws: Aws, nodes: list[Environment]) -> list[str]:
    """Terminate the nodes (cancelling persistent spot requests first) and wait until gone."""
    from dlenv.cloud import instances

    ids = [e.instance_id for e in nodes]
    if not ids:
        return []
    instances.terminate(aws, nodes)
    for ident in ids:
        instances.wait(aws, "instance_terminated", ident, timeout=600)
    return ids
