"""`dlenv up NAME --nodes N` and `dlenv down NAME` for a cluster: launch, roll back, remove.

All N nodes come from one RunInstances call (MinCount = MaxCount = N) into one cluster placement
group in one zone: AWS gives all of them or none, and a short answer is rolled back as well, so a
cluster is never left half-made. Each node is an environment `NAME-K` (ssh, jupyter, stop work on
it unchanged); the cluster owns the key pair and SSH group `dlenv-NAME` (as one environment
would), the placement group `dlenv-NAME` and the cluster group `dlenv-cluster-NAME`. The nodes
are provisioned by the same parallel runner as `up --count` (dlenv.ops.up.provision_all), then
every node learns the cluster (dlenv.ops.nodes.configure: cluster.env, hostfile); `execute` is
that whole sequence under every name's lock.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from dlenv.errors import CapacityError, DlenvError, NotFoundError, UsageError

if TYPE_CHECKING:
    from mypy_boto3_ec2.type_defs import TagTypeDef

    from dlenv.cloud.catalog import InstanceType
    from dlenv.cloud.cluster import ClusterView
    from dlenv.cloud.instances import Environment
    from dlenv.cloud.session import Aws
    from dlenv.config import Settings
    from dlenv.ops.up import Ready, UpDone, UpRequest
    from dlenv.terminal import Terminal

MIN_NODES = 2
MAX_NODES = 64


@dataclass(frozen=True)
class ClusterRequest:
    """What `up NAME --nodes N` asks for, checked before any AWS call."""

    name: str
    nodes: int
    itype: InstanceType
    efa: bool

    @property
    def node_names(self) -> list[str]:
        from dlenv.cloud.cluster import node_name

        return [node_name(self.name, k) for k in range(self.nodes)]


def check_request(name: str, nodes: int, settings: Settings, efa: bool | None) -> ClusterRequest:
    """Names, type and EFA checked before anything is created (one line each when wrong).

    `efa`: None = on where the type supports it; True on a type without EFA is refused.
    """
    from dlenv.cloud import catalog
    from dlenv.ops import lifecycle

    if not MIN_NODES <= nodes <= MAX_NODES:
        raise UsageError(
            f"--nodes {nodes} is not a cluster size dlenv launches",
            f"give {MIN_NODES}..{MAX_NODES} nodes (one machine: leave --nodes out)",
        )
    lifecycle.validate_name(name)
    request = ClusterRequest(
        name, nodes, catalog.launchable(settings.instance, settings.region), False
    )
    for each in request.node_names:
        try:
            lifecycle.validate_name(each)
        except UsageError:
            raise UsageError(
                f"cluster name {name!r} is too long for its node names (up to {each!r})",
                "use a name of at most 37 characters",
            ) from None
    supported = request.itype.efa_interfaces > 0
    if efa and not supported:
        efa_types = sorted(catalog.EFA_INTERFACES)
        raise UsageError(
            f"{request.itype.name} has no EFA (Elastic Fabric Adapter)",
            f"drop --efa, or pick a type with EFA, e.g. {', '.join(efa_types[:6])} ...",
        )
    return dataclasses.replace(request, efa=supported if efa is None else efa)


def node_settings(settings: Settings) -> Settings:
    """A node's own copy of the settings (record_choices and the budget may fill it in)."""
    return copy.deepcopy(settings)


# ---- up ------------------------------------------------------------------------------------------
@dataclass
class ClusterUp:
    """The nodes as `dlenv.ops.up.provision_all` takes them, and whether they have EFA."""

    results: list[Ready]
    """(node name, its settings, its UpResult) per node, in rank order."""
    efa: bool


def up(
    request: ClusterRequest,
    settings: Settings,
    terminal: Terminal,
    *,
    yes: bool = False,
    wait_ssh: bool = True,
) -> ClusterUp:
    """Launch the cluster, or find it whole and running (then its nodes' EFA tag, not the
    request, says whether they have EFA). The caller holds the locks."""
    from dlenv.cloud import cluster, instances, network
    from dlenv.cloud.session import from_settings

    cidr = network.resolve_ssh_cidr(
        settings.allow_cidr,
        None,
        terminal.warn,
        origin=settings.sources.get("allow_cidr", "--allow-cidr"),
    )
    aws = from_settings(settings)
    found = cluster.view(request.name, cluster.list_nodes(aws, request.name))
    if found.nodes:
        return _existing(aws, request, found, settings, terminal, wait_ssh)
    taken = [
        e.name
        for e in instances.list_environments(aws)
        if e.name in {request.name, *request.node_names} and e.state != "shutting-down"
    ]
    if taken:
        raise UsageError(
            f"{', '.join(taken)} already exist(s) as environment(s), not as cluster {request.name}",
            f"pick another cluster name, or `dlenv down {taken[0]}` first",
        )
    envs = _launch(aws, request, cidr, settings, terminal, yes)
    return ClusterUp(
        _ready(aws, request.name, envs, settings, terminal, wait_ssh, "launched"), request.efa
    )


def execute(up_request: UpRequest, terminal: Terminal) -> UpDone:
    """`up NAME --nodes N` end to end: the cluster launched whole (or found whole and running)
    under the lock of its name and of every node's, provisioned in parallel like `--count`,
    every node told about the others, then `--workdir` uploaded to each node."""
    from dlenv.ops.up import UpDone, provision_all, upload_workdir
    from dlenv.statefile import env_lock

    assert up_request.nodes is not None  # dlenv.ops.up.execute comes here only with --nodes
    name, nodes, settings = up_request.name, up_request.nodes, up_request.settings
    request = check_request(name, nodes, settings, up_request.efa)
    with contextlib.ExitStack() as locks:
        for each in [name, *request.node_names]:
            locks.enter_context(env_lock(each, say=terminal.info))
        made = up(request, settings, terminal, yes=up_request.yes, wait_ssh=up_request.provision)
        results = made.results
        if not up_request.provision:
            terminal.info(
                f"connect: dlenv ssh {request.node_names[0]}   "
                f"provision later: dlenv up {name} --nodes {nodes}"
            )
            return UpDone(results, provisioned=False)
        provision_all(results, up_request.options_for, terminal, efa=made.efa)
        configure(name, results, settings, terminal)
        terminal.success(
            f"cluster {name}: {nodes} nodes provisioned, each knows the cluster "
            "(/etc/dlenv/cluster.env)"
        )
        if up_request.workdir is not None:
            upload_workdir([each for each, _, _ in results], up_request.workdir, settings, terminal)
    terminal.info(
        f"next: dlenv run {name} -- hostname   |   dlenv status {name}   |   dlenv down {name}"
    )
    return UpDone(results, provisioned=True)


def _existing(
    aws: Aws,
    request: ClusterRequest,
    found: ClusterView,
    settings: Settings,
    terminal: Terminal,
    wait_ssh: bool,
) -> ClusterUp:
    """A whole running cluster is reused (up again re-provisions it); anything else is said."""
    from dlenv.cloud.cluster import TAG_EFA

    if found.state != "complete" or found.expected != request.nodes:
        raise DlenvError(
            found.summary()
            + ("" if found.expected == request.nodes else f"; it has {found.expected} nodes"),
            f"`dlenv down {request.name}` removes it; then `dlenv up {request.name} "
            f"--nodes {request.nodes}` launches it whole",
        )
    efa = all(e.tags.get(TAG_EFA) == "yes" for e in found.running)
    terminal.info(
        f"cluster {request.name} is already running ({found.expected} nodes"
        f"{', EFA' if efa else ''})"
    )
    results = _ready(
        aws, request.name, found.running, settings, terminal, wait_ssh, "already-running"
    )
    return ClusterUp(results, efa)


def _ready(
    aws: Aws,
    name: str,
    envs: list[Environment],
    settings: Settings,
    terminal: Terminal,
    wait_ssh: bool,
    action: Literal["launched", "already-running"],
) -> list[Ready]:
    """Every node's ssh entry written and (unless told not to) its SSH login proven, in parallel.

    Host keys come from each instance's own console, exactly as for one environment."""
    from dlenv.ops import lifecycle
    from dlenv.ops.up import UpResult

    _share_key(name, [e.name for e in envs], aws.region_name)

    def one(env: Environment) -> Ready:
        mine = node_settings(settings)
        target = lifecycle.ready_for_ssh(aws, env.name, env, mine, terminal, wait_ssh=wait_ssh)
        return env.name, mine, UpResult(env, action, target)

    try:
        return _in_parallel(one, envs)
    except BaseException:
        terminal.warn(
            f"cluster {name} is kept (its nodes run); `dlenv up {name} --nodes {len(envs)}` "
            f"continues, `dlenv down {name}` removes it"
        )
        raise


def _in_parallel(job: Callable[[Environment], Ready], envs: list[Environment]) -> list[Ready]:
    """`job` for every node at once; the first failure (in rank order) is raised.

    Daemon threads, joined in short steps: a Ctrl-C reaches the main thread at once, and the
    SSH waits still running (up to --ssh-timeout) do not hold the process open.
    """
    done: list[Ready | None] = [None] * len(envs)
    failed: list[BaseException | None] = [None] * len(envs)

    def run(index: int, env: Environment) -> None:
        try:
            done[index] = job(env)
        except BaseException as exc:  # handed to the main thread below
            failed[index] = exc

    threads = [
        threading.Thread(target=run, args=(i, env), name=f"dlenv-ready-{env.name}", daemon=True)
        for i, env in enumerate(envs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    for exc in failed:
        if exc is not None:
            raise exc
    return [r for r in done if r is not None]


def _share_key(name: str, nodes: list[str], region: str) -> None:
    """Each node `NAME-K` gets a copy of the cluster's private key under its own name, so
    `dlenv ssh NAME-K` (and everything else that takes one environment) finds it."""
    from dlenv.cloud import keys
    from dlenv.statefile import atomic_write

    source = keys.require_private_key(name, region)
    data = source.read_bytes()
    public = source.with_name(source.name + ".pub")
    for each in nodes:
        path = keys.private_key_path(each)
        if not path.is_file() or path.read_bytes() != data:
            atomic_write(path, data, mode=0o600)
            if public.is_file():
                atomic_write(path.with_name(path.name + ".pub"), public.read_bytes(), mode=0o644)
        keys.set_home_region(each, region)


def _common_tags(
    request: ClusterRequest, user: str, os_name: str, settings: Settings, launch_id: str
) -> list[TagTypeDef]:
    """The tags every resource of this launch carries (the per-node name and rank follow)."""
    from dlenv.cloud import cluster, launch
    from dlenv.cloud.instances import TAG_NAME
    from dlenv.ops import lifecycle

    base = lifecycle.env_tags(request.name, user, os_name, lifecycle.stack_fingerprint(), settings)
    tags = [t for t in base if t["Key"] not in {TAG_NAME, "Name"}]
    return [
        *tags,
        {"Key": "Name", "Value": f"dlenv-{request.name}"},
        {"Key": cluster.TAG_CLUSTER, "Value": request.name},
        {"Key": cluster.TAG_NODES, "Value": str(request.nodes)},
        {"Key": cluster.TAG_EFA, "Value": "yes" if request.efa else "no"},
        {"Key": launch.TAG_LAUNCH, "Value": launch_id},
    ]


@dataclass
class _Created:
    """What this launch created (the rollback removes exactly these, nodes by their tag)."""

    launch_id: str
    local_key_existed: bool
    key_pair: bool = False
    ssh_group: str | None = None
    cluster_group: str | None = None
    placement_group: bool = False
    undone: list[str] = field(default_factory=list)


def _launch(
    aws: Aws,
    request: ClusterRequest,
    cidr: str | None,
    settings: Settings,
    terminal: Terminal,
    yes: bool,
) -> list[Environment]:
    """Create key pair, groups and placement group, then all N nodes in one call; any failure
    or interrupt before every node runs undoes all of it."""
    from dlenv.cloud import cluster, keys, launch, network, quota
    from dlenv.ops import lifecycle

    itype, n = request.itype, request.nodes
    region = aws.region_name
    with terminal.phase(f"checking {n} x {itype.name} in {region}"):
        zones = launch.check_offered(aws, itype.name)
        together = dataclasses.replace(itype, name=f"{n} x {itype.name}", vcpus=itype.vcpus * n)
        quota.preflight(
            aws, together, settings.spot and settings.spot_fallback != "on-demand", terminal.warn
        )
        image = lifecycle.choose_image(aws, settings, itype.arch, terminal)
        if cidr is None:
            cidr = network.resolve_ssh_cidr(None, settings.ip_check_url, terminal.warn)
    market = "spot" if settings.spot else "on-demand"
    question = (
        f"Launch cluster {request.name}: {n} x {itype.name} ({itype.gpu_summary}) {market} in "
        f"{region}, one placement group, {'EFA' if request.efa else 'no EFA'}, at "
        f"{itype.price_per_hour * n:.3f} $/h together, {image.os} ({image.id}), SSH from {cidr}?"
    )
    if not terminal.confirm(question, assume_yes=yes):
        raise DlenvError("launch cancelled", "nothing was created")
    if yes:
        terminal.info(question.rstrip("?"))
    made = _Created(launch.new_launch_id(), keys.private_key_path(request.name).is_file())
    tags = _common_tags(
        request, settings.ssh_user or image.user, image.os, settings, made.launch_id
    )
    try:
        vpc = network.default_vpc(aws)
        subnets = network.default_subnets(aws, vpc)
        with terminal.phase("key pair, security groups and placement group"):
            key = keys.ensure_key_pair(aws, request.name, tags, say=terminal.warn)
            made.key_pair = key.created_in_ec2
            sg, created = network.ensure_group(aws, request.name, vpc, cidr, tags)
            made.ssh_group = sg if created else None
            made.cluster_group = cluster.create_cluster_group(aws, request.name, vpc, tags)
            group = cluster.create_placement_group(aws, request.name, tags)
            made.placement_group = True
        spec = lifecycle.launch_spec(
            aws,
            request.name,
            itype,
            image.id,
            key.name,
            sg,
            subnets,
            settings,
            tags,
            made.launch_id,
            count=n,
            placement_group=group,
            extra_groups=(made.cluster_group,),
            efa=request.efa,
        )
        with terminal.phase(f"launching {n} x {itype.name} ({market}) in one call"):
            try:
                launched = launch.run_all(aws, spec, zones, terminal.info)
            except CapacityError as exc:
                raise _capacity_error(request, region, exc) from None
            if len(launched) < n:  # all or nothing: AWS should never answer short, but if it does
                raise CapacityError(
                    f"AWS launched {len(launched)} of {n} {itype.name} nodes; the cluster needs all",
                    "retry later, or fewer --nodes",
                )
            ids = cluster.name_nodes(aws, request.name, launched)
        with terminal.phase(f"waiting for {n} nodes to run"):
            for ident in ids:
                _wait_running(aws, ident)
        envs = cluster.list_nodes(aws, request.name, launch_id=made.launch_id)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            terminal.warn(
                f"interrupted: undoing what this launch of cluster {request.name} created"
            )
        finished = _rollback(aws, request.name, made, terminal)
        if made.undone:
            terminal.note(f"rolled back: {', '.join(made.undone)}")
        if not finished:
            terminal.warn(
                f"rollback did not finish; `dlenv down {request.name}` removes what is left"
            )
        raise
    keys.set_home_region(request.name, region)
    zone = envs[0].az if envs else "?"
    terminal.success(
        f"cluster {request.name}: {n} x {itype.name} running in {zone} (placement group "
        f"{cluster.placement_group_name(request.name)}{', EFA' if request.efa else ''}): "
        + ", ".join(f"{e.name} {e.public_ip}" for e in envs)
    )
    return envs


def _wait_running(aws: Aws, ident: str) -> None:
    from dlenv.cloud import instances

    instances.wait(aws, "instance_running", ident)


def _capacity_error(request: ClusterRequest, region: str, exc: CapacityError) -> CapacityError:
    """AWS's capacity error, said for a cluster: N together in one placement group."""
    fewer = f", or fewer nodes (--nodes {request.nodes - 1})" if request.nodes > MIN_NODES else ""
    return CapacityError(
        f"AWS has no capacity for {request.nodes} x {request.itype.name} together in one "
        f"placement group in any zone of {region}; nothing was kept",
        "capacity for a cluster placement group comes and goes: retry in a while, try another "
        f"region (--region) or type (--instance){fewer}; for a guaranteed block, an EC2 "
        "Capacity Reservation or Capacity Block for ML",
        code=exc.code,
    )


def _rollback(aws: Aws, name: str, made: _Created, terminal: Terminal) -> bool:
    """Undo what `made` records, nodes first (by the launch tag); True when all of it went."""
    from dlenv.cloud import cluster, keys
    from dlenv.ops.down import delete_group_when_free

    try:
        nodes = cluster.list_nodes(aws, name, launch_id=made.launch_id)
        if nodes:
            with terminal.phase(f"terminating {len(nodes)} node(s) of this launch"):
                for ident in cluster.terminate(aws, nodes):
                    made.undone.append(f"terminated {ident}")
        if made.placement_group and cluster.delete_placement_group(aws, name):
            made.undone.append(f"deleted placement group {cluster.placement_group_name(name)}")
        for gid in (made.cluster_group, made.ssh_group):
            if gid:
                delete_group_when_free(aws, name, group_id=gid)
                made.undone.append(f"deleted security group {gid}")
        if made.key_pair:
            keys.delete_key_pair(aws, name, keep_local=True)
            made.undone.append(f"deleted key pair {keys.key_name(name)}")
            if not made.local_key_existed:
                keys.delete_local_key(name)
    except KeyboardInterrupt:
        terminal.warn(f"rollback of cluster {name} interrupted")
        return False
    except Exception as exc:  # said in one line; the caller says how to finish
        text = exc.one_line() if isinstance(exc, DlenvError) else f"{type(exc).__name__}: {exc}"
        terminal.warn(f"rollback of cluster {name} stopped: {text}")
        return False
    return True


def configure(
    name: str,
    results: list[Ready],
    settings: Settings,
    terminal: Terminal,
) -> None:
    """After provisioning: every node gets cluster.env and the hostfile (dlenv.ops.nodes)."""
    from dlenv.ops import nodes

    envs = [result.env for _, _, result in results]
    with terminal.phase(f"telling the {len(envs)} nodes about each other (cluster.env, hostfile)"):
        nodes.configure(nodes.from_environments(envs, settings), cluster=name)


# ---- what exists ---------------------------------------------------------------------------------
def is_cluster(aws: Aws, name: str) -> bool:
    """NAME names a cluster here: a node or its cluster group exists.

    The group is made before the placement group and deleted after it (launch, rollback and
    down alike), so a leftover placement group always has its group beside it; asking for the
    group, not the placement group, keeps `down` of one environment to calls every EC2 (and
    moto) answers.
    """
    from dlenv.cloud import cluster

    return bool(cluster.list_nodes(aws, name) or cluster.find_cluster_group(aws, name))


def views(envs: list[Environment]) -> list[ClusterView]:
    """Every cluster among `envs` (status's rows), by name."""
    from dlenv.cloud import cluster

    names = sorted({e.tags[cluster.TAG_CLUSTER] for e in envs if cluster.TAG_CLUSTER in e.tags})
    return [cluster.view(n, envs) for n in names]


def node_names_for_check(names: tuple[str, ...], settings: Settings) -> tuple[str, ...]:
    """`down`'s names with each cluster replaced by its live nodes (whose ~/work is checked)."""
    from dlenv.cloud import cluster
    from dlenv.cloud.session import from_settings

    aws = from_settings(settings)
    out: list[str] = []
    for name in names:
        nodes = cluster.list_nodes(aws, name)
        out.extend([e.name for e in nodes] if nodes else [name])
    return tuple(out)


# ---- down ----------------------------------------------------------------------------------------
@dataclass
class ClusterDown:
    """What `down NAME` removed of a cluster."""

    instances: list[str]
    placement_group: bool
    security_groups: list[str]
    key_pair: bool
    local_keys: int
    ssh_entries: int
    lost: list[str] = field(default_factory=list)
    """Nodes that were already gone (terminated behind dlenv's back)."""


def down(
    name: str, settings: Settings, terminal: Terminal, *, keep_key: bool = False
) -> ClusterDown:
    """Remove every node, then the placement group, the cluster and SSH groups (once no
    terminated node's interface holds them), the key pair and every node's local state.

    Finishes when nodes are already gone; a rerun after an interrupt removes what is left.
    """
    from dlenv.cloud import cluster, instances, keys, network
    from dlenv.cloud.session import from_settings
    from dlenv.ops.down import delete_group_when_free
    from dlenv.ops.lifecycle import validate_name
    from dlenv.statefile import env_lock

    validate_name(name)
    aws = from_settings(settings)
    with env_lock(name, say=terminal.info):
        nodes = cluster.list_nodes(aws, name)
        found = cluster.view(name, nodes)
        others = {  # an unrelated environment named like a node keeps its key and entry
            e.name
            for e in instances.list_environments(aws)
            if e.tags.get(cluster.TAG_CLUSTER) != name
        }
        local = [n for n in _local_node_names(name) if n not in others]
        expected = max(found.expected, len(local))
        names = sorted(
            {e.name for e in nodes if e.name != "?"} | set(local),
            key=lambda n: (len(n), n),
        )
        pg = cluster.find_placement_group(aws, name)
        cgroup = cluster.find_cluster_group(aws, name)
        sgroup = network.find_group(aws, name)
        key_tags = keys.key_pair_tags(aws, name)
        if not (nodes or pg or cgroup or names):
            raise NotFoundError(
                f"no cluster named {name!r} in {aws.region_name}",
                "`dlenv status` lists your environments and clusters (check --region)",
            )
        lost = (
            [
                n
                for n in (cluster.node_name(name, k) for k in range(expected))
                if n not in {e.name for e in nodes}
            ]
            if expected
            else []
        )
        if lost:
            terminal.warn(f"cluster {name}: {', '.join(lost)} already gone; removing the rest")
        ids: list[str] = []
        if nodes:
            with terminal.phase(f"terminating {len(nodes)} node(s) of {name}"):
                ids = cluster.terminate(aws, nodes)
        removed_pg = bool(pg) and cluster.delete_placement_group(aws, name)
        groups = []
        for group in (cgroup, sgroup):
            if group:
                delete_group_when_free(aws, name, group_id=group["GroupId"])
                groups.append(group["GroupId"])
        key_pair = False
        local_keys = 0
        if not keep_key:
            if key_tags is not None:
                key_pair = keys.delete_key_pair(aws, name, keep_local=True)
            for each in [name, *names]:
                local_keys += int(keys.delete_local_key(each))
        entries = 0
        for each in names:
            entries += int(_forget_node(each, terminal))
    return ClusterDown(ids, removed_pg, groups, key_pair, local_keys, entries, lost)


_NODE_KEY = re.compile(r"^dlenv-(.+)-(\d{1,2})$")


def _local_node_names(name: str) -> list[str]:
    """Node names this machine holds a key or an ssh entry for (`NAME-K`)."""
    from dlenv.paths import keys_dir

    out = set()
    try:
        for path in keys_dir().iterdir():
            match = _NODE_KEY.fullmatch(path.name)
            if match and match.group(1) == name:
                out.add(f"{name}-{match.group(2)}")
    except OSError:
        pass
    return sorted(out)


def _forget_node(node: str, terminal: Terminal) -> bool:
    """The node's ssh config entry and known_hosts lines; a bad file costs one warning line."""
    from dlenv.errors import StateFileError
    from dlenv.ssh import config as sshconfig
    from dlenv.ssh import known_hosts

    try:
        known_hosts.remove_host(f"dlenv-{node}")
        return sshconfig.remove_entry(node, warn=terminal.warn)
    except (StateFileError, OSError, ValueError) as exc:
        terminal.warn(
            f"could not remove {node}'s ssh entry ({exc}); remove Host dlenv-{node} by hand"
        )
        return False
