"""The nodes of a cluster and what each of them knows about the others.

A cluster is N machines that torchrun treats as one job: EC2 instances made by `dlenv up NAME
--nodes N` (named NAME-0 .. NAME-{N-1}, tagged `dlenv:cluster`, `dlenv:rank`, `dlenv:nodes`), or
any SSH boxes given as `--host a --host b ...` (rank = the order given). Each node gets
`/etc/dlenv/cluster.env` (its rank, the node count, its GPU count, the rendezvous address), a
hostfile, and `dlenv-torchrun`, a wrapper that starts torchrun with those values, so a training
command is the same on every node: `dlenv run NAME -- dlenv-torchrun train.py`.

Every value written there is validated (ranks and counts are ints, addresses are IPs or host
names) and every remote command is built from quoted words: an EC2 tag or a `--host` value never
reaches a shell as code.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dlenv.errors import DlenvError, NotFoundError, UsageError
from dlenv.ssh.target import HOSTNAME_RE, SshTarget

if TYPE_CHECKING:
    from dlenv.cloud.instances import Environment
    from dlenv.cloud.session import Aws
    from dlenv.config import Settings

TAG_CLUSTER = "dlenv:cluster"
TAG_RANK = "dlenv:rank"
TAG_NODES = "dlenv:nodes"
CLUSTER_DIR = "/etc/dlenv"
CLUSTER_ENV = f"{CLUSTER_DIR}/cluster.env"
HOSTFILE = f"{CLUSTER_DIR}/hostfile"
WRAPPER = "/usr/local/bin/dlenv-torchrun"
DEFAULT_PORT = 29500
"""torchrun's own default rendezvous port."""
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

Say = Callable[[str], None]


@dataclass(frozen=True)
class Node:
    """One machine of a cluster: its rank, its display name, how to reach it, and the address
    the other nodes reach it by (the private IP on EC2; what the host reports for `--host`)."""

    rank: int
    name: str
    target: SshTarget
    private_addr: str


# -- validation --------------------------------------------------------------------------------
def check_addr(value: str, source: str) -> str:
    """An IPv4/IPv6 address or a host name, else UsageError naming where it came from."""
    if isinstance(value, str) and value:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
        if HOSTNAME_RE.fullmatch(value) and len(value) <= 253:
            return value
    raise UsageError(
        f"{source} is {value!r}, which is not an IP address or host name",
        "give an IPv4/IPv6 address or a DNS name (letters, digits, '-', '.')",
    )


def check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError(f"rendezvous port {port!r} is out of range", "use a port 1-65535")
    return port


def endpoint(addr: str, port: int) -> str:
    """`addr:port` as torchrun's --rdzv-endpoint reads it (IPv6 in brackets)."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _int_tag(env: Environment, key: str) -> int:
    raw = env.tags.get(key, "")
    if not raw.isdigit() or len(raw) > 4:
        raise DlenvError(
            f"instance {env.instance_id} ({env.name}) has tag {key}={raw!r}, not a number",
            "it was not made by `dlenv up --nodes`; fix or remove the tag",
        )
    return int(raw)


# -- where the nodes come from -----------------------------------------------------------------
def from_environments(envs: Sequence[Environment], settings: Settings) -> list[Node]:
    """The nodes of EC2 environments already described (no AWS call), sorted by `dlenv:rank`.

    Each node is reached like `dlenv ssh NAME-K` reaches it (its own key, its host-key alias)
    and known to the others by its private IP.
    """
    from dlenv.cloud.instances import target_of
    from dlenv.cloud.keys import check_private_key, missing_key_error, private_key_path

    nodes = []
    for env in envs:
        rank = _int_tag(env, TAG_RANK)
        key = private_key_path(env.name)
        if not key.is_file():
            cluster_key = private_key_path(env.tags.get(TAG_CLUSTER, env.name))
            if not cluster_key.is_file():
                raise missing_key_error(env.name, settings.region or "this region")
            key = cluster_key
        if not env.private_ip:
            raise DlenvError(f"{env.name} has no private IP address yet", "wait a moment and retry")
        nodes.append(
            Node(
                rank=rank,
                name=env.name,
                target=target_of(env, settings, check_private_key(key)),
                private_addr=check_addr(
                    env.private_ip, f"the private IP EC2 reports for {env.name}"
                ),
            )
        )
    return sorted(nodes, key=lambda n: n.rank)


def for_cluster(aws: Aws, name: str, settings: Settings) -> list[Node]:
    """The running nodes of cluster `name` (found by its `dlenv:cluster` tag).

    A partial cluster (a node missing or not running) is refused with one line naming the node
    and the fix: a job started on N-1 nodes would wait for the missing one until it timed out.
    """
    from dlenv.cloud.instances import list_environments

    members = [e for e in list_environments(aws) if e.tags.get(TAG_CLUSTER) == name]
    if not members:
        raise NotFoundError(
            f"no cluster named {name!r} in {aws.region_name}",
            f"make one with `dlenv up {name} --nodes N` (`dlenv status` lists what exists)",
        )
    expected = max(_int_tag(e, TAG_NODES) for e in members)
    by_rank = {_int_tag(e, TAG_RANK): e for e in members}
    for rank in range(expected):
        env = by_rank.get(rank)
        if env is None:
            raise DlenvError(
                f"cluster {name} is partial: node {name}-{rank} (rank {rank} of {expected}) is "
                "missing",
                f"recreate it: `dlenv down {name}`, then `dlenv up {name} --nodes {expected}`",
            )
        if env.state != "running":
            raise DlenvError(
                f"cluster {name} is partial: node {env.name} (rank {rank}) is {env.state}",
                f"start it with `dlenv start {env.name}`",
            )
    return from_environments([by_rank[r] for r in range(expected)], settings)


def from_hosts(
    hosts: Sequence[str],
    *,
    identity: str | Path | None = None,
    proxy_command: str | None = None,
    trust_new_host_key: bool = False,
    say: Say | None = None,
) -> list[Node]:
    """Any SSH boxes as a cluster: rank = the order given; each node's private address is the
    one it reports (the source address of its default route, else the first of `hostname -I`).

    Host keys are checked one host at a time first (the same policy as `dlenv ssh --host`: asked
    on a terminal, recorded with `trust_new_host_key`, else refused), then the addresses are
    read in parallel.
    """
    from dlenv.ssh.openssh import prepare
    from dlenv.ssh.target import from_host_flag

    if not hosts:
        raise UsageError(
            "give the cluster's hosts", "e.g. --host ubuntu@10.0.0.5 --host ubuntu@10.0.0.6"
        )
    targets = [from_host_flag(h, identity, proxy_command) for h in hosts]
    seen: set[tuple[str, int]] = set()
    for spec, target in zip(hosts, targets, strict=True):
        if (target.host, target.port) in seen:
            raise UsageError(f"--host {spec} is given twice", "name each node once")
        seen.add((target.host, target.port))
    for target in targets:
        prepare(target, trust_new=trust_new_host_key, say=say)
    script = (
        "a=$(ip -o route get 192.0.2.1 2>/dev/null | sed -n 's/.* src \\([^ ]*\\).*/\\1/p'); "
        'if [ -z "$a" ]; then a=$(hostname -I 2>/dev/null | cut -d" " -f1); fi; echo "$a"'
    )
    outputs = _parallel([(t, script) for t in targets])
    nodes = []
    for rank, (target, out) in enumerate(zip(targets, outputs, strict=True)):
        addr = out.strip().splitlines()[-1].strip() if out.strip() else ""
        if not addr:
            raise DlenvError(
                f"{target.label} reports no IP address (neither `ip route` nor `hostname -I`)",
                "give the address the nodes reach each other by with --rendezvous-addr",
                host=target.label,
            )
        nodes.append(
            Node(
                rank, target.label, target, check_addr(addr, f"the address {target.label} reports")
            )
        )
    return nodes


# -- what each node is told --------------------------------------------------------------------
@dataclass(frozen=True)
class NodeFiles:
    """The three files `configure` writes on one node."""

    cluster_env: str
    hostfile: str
    wrapper: str


def render_cluster_env(
    node: Node,
    nnodes: int,
    gpus: int,
    rendezvous: str,
    port: int,
    *,
    cluster: str | None = None,
) -> str:
    """`/etc/dlenv/cluster.env`: KEY=value lines a POSIX shell, systemd's EnvironmentFile and
    `set -a; . FILE` all read alike (so every value is validated, none needs quoting)."""
    if not 0 <= node.rank < nnodes:
        raise UsageError(f"rank {node.rank} is outside 0..{nnodes - 1}")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise UsageError(f"GPU count {gpus!r} is not a non-negative integer")
    addr = check_addr(rendezvous, "the rendezvous address")
    check_port(port)
    lines = [
        "# written by dlenv: this node's place in the cluster (`dlenv run` exports it)",
    ]
    if cluster is not None:
        if not _NAME_RE.fullmatch(cluster):
            raise UsageError(f"cluster name {cluster!r} is not a valid name")
        lines.append(f"DLENV_CLUSTER={cluster}")
    lines += [
        f"DLENV_NODE_RANK={node.rank}",
        f"DLENV_NNODES={nnodes}",
        f"DLENV_GPUS_PER_NODE={gpus}",
        f"DLENV_NPROC_PER_NODE={max(gpus, 1)}",
        f"DLENV_RENDEZVOUS={endpoint(addr, port)}",
        f"DLENV_NODE_ADDR={check_addr(node.private_addr, 'the node address')}",
        f"DLENV_HOSTFILE={HOSTFILE}",
        f"MASTER_ADDR={addr}",
        f"MASTER_PORT={port}",
    ]
    return "\n".join(lines) + "\n"


def render_hostfile(nodes: Sequence[Node], gpus: Sequence[int]) -> str:
    """One `ADDR slots=N` line per node in rank order (the MPI / DeepSpeed hostfile form)."""
    return "".join(
        f"{check_addr(n.private_addr, f'the address of {n.name}')} slots={max(g, 1)}\n"
        for n, g in zip(nodes, gpus, strict=True)
    )


WRAPPER_TEXT = """#!/bin/sh
# dlenv-torchrun: torchrun with this node's place in the cluster (written by dlenv).
# Reads /etc/dlenv/cluster.env; every argument is passed on to torchrun (script or -m module).
# Static rendezvous on node 0 (MASTER_ADDR:MASTER_PORT): node K's processes get global ranks in
# node order, so rank 0 is on node 0; every node is known by its cluster address (--local-addr),
# whatever its hostname resolves to on the others. --max-restarts 0: a failure ends the job.
set -e
set -a
. /etc/dlenv/cluster.env
set +a
# gloo: the interface that holds this node's cluster address (not what the hostname resolves to)
if [ -z "${GLOO_SOCKET_IFNAME:-}" ] && command -v ip >/dev/null 2>&1; then
  ifname=$(ip -o addr show 2>/dev/null | awk -v a="$DLENV_NODE_ADDR" '{split($4, p, "/"); if (p[1] == a) {print $2; exit}}')
  if [ -n "$ifname" ]; then export GLOO_SOCKET_IFNAME="$ifname"; fi
fi
if command -v torchrun >/dev/null 2>&1; then
  set -- torchrun "$@"
else
  set -- python3 -m torch.distributed.run "$@"
fi
run=$1
shift
exec "$run" --nnodes "$DLENV_NNODES" --node-rank "$DLENV_NODE_RANK" \\
  --nproc-per-node "${DLENV_NPROC_PER_NODE:-1}" --rdzv-backend static \\
  --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \\
  --local-addr "$DLENV_NODE_ADDR" --max-restarts 0 "$@"
"""


def render(
    nodes: Sequence[Node],
    gpus: Sequence[int],
    *,
    rendezvous_addr: str | None = None,
    port: int = DEFAULT_PORT,
    cluster: str | None = None,
) -> list[NodeFiles]:
    """The files of every node (pure: what `configure` writes, given the GPU counts)."""
    if not nodes:
        raise UsageError("a cluster needs at least one node")
    ranks = [n.rank for n in nodes]
    if ranks != list(range(len(nodes))):
        raise UsageError(f"node ranks {ranks} are not 0..{len(nodes) - 1} in order")
    addr = rendezvous_addr if rendezvous_addr is not None else nodes[0].private_addr
    hostfile = render_hostfile(nodes, gpus)
    return [
        NodeFiles(
            render_cluster_env(n, len(nodes), g, addr, port, cluster=cluster),
            hostfile,
            WRAPPER_TEXT,
        )
        for n, g in zip(nodes, gpus, strict=True)
    ]


_MARK = "--dlenv-file--"
_PROBE = (
    "n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true); echo \"${n:-0}\"; "
    f"for f in {CLUSTER_ENV} {HOSTFILE} {WRAPPER}; do echo '{_MARK}'; cat \"$f\" 2>/dev/null; done; true"
)
_WRITE = f"""set -e
umask 022
mkdir -p {CLUSTER_DIR}
put() {{ printf '%s' "$2" > "$1.dlenv-tmp"; chmod "$3" "$1.dlenv-tmp"; mv -f "$1.dlenv-tmp" "$1"; }}
put {CLUSTER_ENV} "$1" 644
put {HOSTFILE} "$2" 644
put {WRAPPER} "$3" 755
"""


def probe(nodes: Sequence[Node]) -> list[tuple[int, NodeFiles]]:
    """(GPU count, files as they are now) of every node, read in parallel over SSH."""
    outputs = _parallel([(n.target, _PROBE) for n in nodes], names=[n.name for n in nodes])
    found = []
    for node, out in zip(nodes, outputs, strict=True):
        head, *files = out.split(_MARK + "\n")
        count = head.strip().splitlines()[-1] if head.strip() else "0"
        if not count.isdigit():
            raise DlenvError(f"{node.name}: nvidia-smi -L gave {count!r}", host=node.name)
        files += [""] * (3 - len(files))
        found.append((int(count), NodeFiles(*files[:3])))
    return found


def configure(
    nodes: Sequence[Node],
    *,
    rendezvous_addr: str | None = None,
    port: int = DEFAULT_PORT,
    cluster: str | None = None,
) -> list[int]:
    """Write cluster.env, the hostfile and `dlenv-torchrun` on every node whose copy differs
    (each file replaced by a rename, so a reader never sees half of one); returns the ranks
    that changed. Run by `up --nodes` after provisioning and by `run --host` before a job."""
    if rendezvous_addr is not None:
        rendezvous_addr = check_addr(rendezvous_addr, "--rendezvous-addr")
    check_port(port)
    current = probe(nodes)
    wanted = render(
        nodes, [g for g, _ in current], rendezvous_addr=rendezvous_addr, port=port, cluster=cluster
    )
    from dlenv.ssh.command import join

    jobs = []
    changed = []
    for node, (_, now), files in zip(nodes, current, wanted, strict=True):
        if now == files:
            continue
        changed.append(node.rank)
        words = [
            "sh",
            "-c",
            _WRITE,
            "dlenv-configure",
            files.cluster_env,
            files.hostfile,
            files.wrapper,
        ]
        jobs.append(
            (
                node,
                f'if [ "$(id -u)" = 0 ]; then {join(words)}; else {join(["sudo", "-n", *words])}; fi',
            )
        )
    _parallel([(n.target, cmd) for n, cmd in jobs], names=[n.name for n, _ in jobs])
    return changed


# -- one command on many hosts -----------------------------------------------------------------
def ssh_command(target: SshTarget, remote: str, *, tty: bool = False) -> list[str]:
    """ssh(1) argv running the shell line `remote` on `target`, with the same verified options
    as `dlenv ssh` (host keys checked, BatchMode); `tty` forces a remote terminal, so closing
    the connection hangs the remote command up (how `dlenv run` stops a job on Ctrl-C)."""
    from dlenv.ssh.openssh import ssh_line_argv

    return ssh_line_argv(target, remote, *(["-tt"] if tty else []))


def _run_one(target: SshTarget, remote: str, timeout: float) -> str:
    from dlenv.ssh.openssh import run_captured

    proc = run_captured(
        target,
        ssh_command(target, remote),
        timeout=timeout,
        timed_out=(f"no answer within {timeout:.0f}s", "check that the machine is up"),
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise DlenvError(
            f"a cluster setup command failed (exit {proc.returncode}): {last}",
            "the login user needs passwordless sudo on every node",
            host=target.label,
        )
    return proc.stdout


def _parallel(
    jobs: Sequence[tuple[SshTarget, str]],
    *,
    names: Sequence[str] | None = None,
    timeout: float = 120,
) -> list[str]:
    """Run each (target, shell line) at once; the first failure (in rank order) is raised,
    naming its node."""
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(jobs))) as pool:
        futures = [pool.submit(_run_one, t, cmd, timeout) for t, cmd in jobs]
    results = []
    for i, fut in enumerate(futures):
        exc = fut.exception()
        if exc is not None:
            if isinstance(exc, DlenvError) and names is not None:
                exc.host = names[i]
            raise exc
        results.append(fut.result())
    return results


def resolve(
    name: str | None,
    hosts: Sequence[str],
    settings: Settings,
    *,
    identity: str | Path | None = None,
    trust_new_host_key: bool = False,
    rendezvous_addr: str | None = None,
    say: Say | None = None,
) -> tuple[str, list[Node]]:
    """(label, nodes) of a cluster NAME or of `--host` boxes, each node told the cluster.

    `--host` boxes are configured here when their cluster.env is absent or differs (another
    host list, another order, `--rendezvous-addr`); a cluster made by `up --nodes` was
    configured when it was provisioned and is rewritten only for `--rendezvous-addr`.
    """
    if bool(name) == bool(hosts):
        raise UsageError(
            "give a cluster NAME or --host USER@HOST (repeated), one of them",
            "e.g. `dlenv run mycluster -- hostname` or `dlenv run --host u@h1 --host u@h2 -- hostname`",
        )
    if hosts:
        nodes = from_hosts(
            hosts,
            identity=identity,
            proxy_command=settings.ssh_proxy_command,
            trust_new_host_key=trust_new_host_key,
            say=say,
        )
        configure(nodes, rendezvous_addr=rendezvous_addr)
        return f"{len(nodes)} hosts", nodes
    assert name is not None
    if not _NAME_RE.fullmatch(name):
        raise UsageError(f"{name!r} is not a cluster name", "use letters, digits, '.', '_' or '-'")
    from dlenv.cloud.session import from_settings

    nodes = for_cluster(from_settings(settings), name, settings)
    if rendezvous_addr is not None:
        configure(nodes, rendezvous_addr=rendezvous_addr, cluster=name)
    return name, nodes


def cluster_member_names(name: str, settings: Settings) -> list[str]:
    """The nodes' names (rank order) when NAME is a cluster and no environment is called NAME;
    else []: `dlenv sync NAME --up` copies to every node of a cluster, to one environment else.
    A partial cluster is refused like `run` refuses it."""
    from dlenv.cloud.instances import list_environments
    from dlenv.cloud.session import from_settings

    aws = from_settings(settings)
    envs = list_environments(aws)
    if any(e.name == name for e in envs) or not any(e.tags.get(TAG_CLUSTER) == name for e in envs):
        return []
    return [n.name for n in for_cluster(aws, name, settings)]
