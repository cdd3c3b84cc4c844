"""Host containers on one Docker network standing in for the nodes of a moto-launched cluster.

Shared by tests/e2e/test_cluster_e2e.py and benchmarks/cluster_bench.py. moto launches nothing
real, so each environment name (a node NAME-K, or an `up --count` box) is mapped to its own
container: the ProxyCommand (tests/e2e/cluster_relay.py) asks moto which environment has the
address dlenv connects to and relays to that environment's container. The containers share one
set of SSH host keys (copied from the first), which moto's console output carries for every
instance (moto has one console text for all), so the verified host-key path is used throughout;
they share the test user's key, which is put in place as every name's dlenv key.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from harness import hosts

RELAY = Path(__file__).resolve().parent / "e2e" / "cluster_relay.py"
_HOST_KEYS = "ssh_host_*"


@dataclass
class ClusterHosts:
    network: str
    hosts: list[hosts.TestHost] = field(default_factory=list)

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()
        subprocess.run(["docker", "network", "rm", self.network], capture_output=True)


def start(work: Path, count: int) -> ClusterHosts:
    """`count` fresh hosts on a new Docker network, all with the first one's host keys."""
    hosts.require_engine()
    hosts.ensure_images()
    net = f"dlenv-test-cluster-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "network", "create", net], check=True, capture_output=True)
    cluster = ClusterHosts(net)
    try:
        for _ in range(count):
            # no shared apt archive: the hosts install at the same time, and apt-get fails (not
            # waits) on an archive another host's apt-get holds locked
            cluster.hosts.append(hosts.start_host(work=work, network=net, shared_caches=False))
        _share_host_keys(cluster.hosts)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _share_host_keys(group: list[hosts.TestHost]) -> None:
    first = group[0]
    packed = subprocess.run(
        ["docker", "exec", first.container, "sh", "-c", f"cd /etc/ssh && tar -cf - {_HOST_KEYS}"],
        capture_output=True,
        check=True,
    ).stdout
    for host in group[1:]:
        subprocess.run(
            ["docker", "exec", "-i", host.container, "sh", "-c",
             "cd /etc/ssh && rm -f ssh_host_* && tar -xf - && systemctl restart ssh"],
            input=packed,
            capture_output=True,
            check=True,
        )  # fmt: skip
        host.host_keys = list(first.host_keys)


def address(host: hosts.TestHost) -> str:
    """The container's address on the cluster network (what `hostname -I` shows there)."""
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
         host.container],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()[0]


def wire(
    state_dir: Path, mapping: dict[str, hosts.TestHost], *, keys_for: tuple[str, ...] = ()
) -> dict[str, str]:
    """Each mapped name's (and each `keys_for` name's: a cluster's own key) dlenv key is the
    test key; returns the env vars that route each name to its host."""
    import shlex

    keys = state_dir / "keys"
    keys.mkdir(parents=True, mode=0o700, exist_ok=True)
    key = hosts.test_key()
    for name in (*mapping, *keys_for):
        for suffix in ("", ".pub"):
            shutil.copy(key.with_suffix(suffix), keys / f"dlenv-{name}{suffix}")
        (keys / f"dlenv-{name}").chmod(0o600)
    mapfile = state_dir / "cluster-hosts.json"
    mapfile.write_text(json.dumps({n: h.port for n, h in mapping.items()}))
    relay = " ".join(shlex.quote(str(x)) for x in (sys.executable, RELAY))
    return {
        "DLENV_SSH_USER": hosts.USER,
        "DLENV_SSH_PROXY_COMMAND": f"{relay} %h {shlex.quote(str(mapfile))}",
        "DLENV_SSH_TIMEOUT": "180",
    }
