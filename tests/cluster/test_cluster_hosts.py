"""Three SSH boxes as one cluster, through the real CLI: host containers (systemd + sshd) on one
Docker network of their own, so they reach each other by private address like EC2 nodes in a
placement group. Started from the provisioned host image (tests/harness/provisioned.py: these
tests are about the cluster, not about provisioning), then `provision --only` what torchrun needs
(base packages, the uv env, CPU torch from the wheelhouse) through the real CLI, all three at
once, which finds those steps done.

Covers: `run --host ...` writes cluster.env/hostfile/dlenv-torchrun on every node; output
prefixed by node; the worst exit code and `--node K`; a real torchrun (gloo) all-reduce across
the three containers with `dlenv-torchrun`; `smoke-test --host ... --nodes` passing on the CPU
path with its bandwidth figure and a falling loss; Ctrl-C stopping the remote commands; an
unreachable node named; hostile input refused with one line.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = "base-packages,python-env,pytorch"


@dataclass
class Cluster:
    hosts: list  # type: ignore[type-arg]  # harness TestHost
    addrs: list[str]
    state: Path
    home: Path

    @property
    def host_args(self) -> list[str]:
        args = [a for h in self.hosts for a in ("--host", h.spec)]
        return [*args, "-i", str(self.hosts[0].key)]

    def env(self) -> dict[str, str]:
        return {
            "DLENV_STATE_DIR": str(self.state),
            "DLENV_CONFIG_DIR": str(self.home / ".config" / "dlenv"),
            "HOME": str(self.home),
            "PATH": "/usr/bin:/bin",
            "NO_COLOR": "1",
            "PYTHONPATH": str(REPO / "src"),
        }

    def dlenv(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dlenv", *args],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.home,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture(scope="module")
def cluster(
    provisioned_image: str, wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    from harness import start_host

    work = tmp_path_factory.mktemp("cluster")
    network = f"dlenv-test-cluster-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "network", "create", network], check=True, capture_output=True)
    hosts = []
    try:
        for _ in range(3):
            hosts.append(
                start_host(
                    provisioned_image,
                    work=work,
                    network=network,
                    name_prefix="dlenv-test-node",
                    shared_caches=False,
                )
            )
        home = work / "home"
        (home / ".ssh").mkdir(parents=True)
        state = home / "state"
        state.mkdir()
        (state / "known_hosts").write_text("".join(h.known_hosts.read_text() for h in hosts))
        c = Cluster(hosts, [], state, home)
        started = time.monotonic()
        res = c.dlenv(
            "provision", *c.host_args, "--python", "uv", "--wheelhouse", str(wheelhouse),
            "--only", STEPS, "--idle-stop", "0", timeout=900,
        )  # fmt: skip
        assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
        print(f"\n[figures] provision 3 hosts --only {STEPS}: {time.monotonic() - started:.1f}s")
        for h in hosts:
            fmt = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
            c.addrs.append(
                subprocess.run(
                    ["docker", "inspect", "-f", fmt, h.container],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
            )
        yield c
    finally:
        for h in hosts:
            h.stop()
        subprocess.run(["docker", "network", "rm", network], capture_output=True)


def test_run_tells_every_node_the_cluster(cluster: Cluster) -> None:
    res = cluster.dlenv("run", *cluster.host_args, "--", "true")
    assert res.returncode == 0, res.stderr
    for rank, h in enumerate(cluster.hosts):
        env = dict(
            line.split("=", 1)
            for line in h.exec("cat /etc/dlenv/cluster.env", check=True).stdout.splitlines()
            if line and not line.startswith("#")
        )
        assert env["DLENV_NODE_RANK"] == str(rank)
        assert env["DLENV_NNODES"] == "3"
        assert env["DLENV_GPUS_PER_NODE"] == "0"  # no nvidia-smi in a container
        assert env["MASTER_ADDR"] == cluster.addrs[0]
        assert env["DLENV_RENDEZVOUS"] == f"{cluster.addrs[0]}:29500"
        assert env["DLENV_NODE_ADDR"] == cluster.addrs[rank]
        hostfile = h.exec("cat /etc/dlenv/hostfile", check=True).stdout
        assert hostfile == "".join(f"{a} slots=1\n" for a in cluster.addrs)
        assert h.exec("stat -c %a /usr/local/bin/dlenv-torchrun").stdout.strip() == "755"
    # the same hosts again: nothing to rewrite (mtime kept)
    before = cluster.hosts[1].exec("stat -c %Y.%N /etc/dlenv/cluster.env").stdout
    time.sleep(1.1)
    assert cluster.dlenv("run", *cluster.host_args, "--", "true").returncode == 0
    assert cluster.hosts[1].exec("stat -c %Y.%N /etc/dlenv/cluster.env").stdout == before


def test_output_is_prefixed_by_node_and_the_worst_exit_code_wins(cluster: Cluster) -> None:
    res = cluster.dlenv(
        "run", *cluster.host_args, "--",
        "echo rank=$DLENV_NODE_RANK of $DLENV_NNODES in $(pwd) with $(command -v python);",
        "test $DLENV_NODE_RANK != 1 || exit 7",
    )  # fmt: skip
    assert res.returncode == 7, res.stderr
    labels = [f"127.0.0.1:{h.port}" for h in cluster.hosts]
    lines = res.stdout.splitlines()
    for rank, label in enumerate(labels):
        assert (
            f"[{label}] rank={rank} of 3 in /home/dlenv/work with /opt/dlenv/env/bin/python"
            in lines
        ), res.stdout
    assert len(lines) == 3
    assert f"failed on {labels[1]} (exit 7)" in res.stderr and "Traceback" not in res.stderr

    one = cluster.dlenv("run", *cluster.host_args, "--node", "1", "--", "hostname", "-I")
    assert one.returncode == 0, one.stderr
    assert one.stdout.split() == [f"[{labels[1]}]", cluster.addrs[1]]


ALLREDUCE = """
import torch, torch.distributed as dist
dist.init_process_group("gloo")
t = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(t)
print(f"rank {dist.get_rank()}/{dist.get_world_size()} sum {t.item():g}", flush=True)
dist.destroy_process_group()
"""


def test_a_real_torchrun_all_reduce_across_the_three_nodes(cluster: Cluster) -> None:
    for h in cluster.hosts:
        subprocess.run(
            ["docker", "exec", "-i", "-u", "dlenv", h.container, "sh", "-c",
             "mkdir -p ~/work && cat > ~/work/allreduce.py"],
            input=ALLREDUCE, text=True, check=True,
        )  # fmt: skip
    res = cluster.dlenv("run", *cluster.host_args, "--", "dlenv-torchrun", "allreduce.py")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    sums = sorted(line.split("] ", 1)[1] for line in res.stdout.splitlines() if " sum " in line)
    # 1 + 2 + 3 on every rank; static rendezvous: global rank K runs on node K
    assert sums == ["rank 0/3 sum 6", "rank 1/3 sum 6", "rank 2/3 sum 6"], res.stdout
    for rank, h in enumerate(cluster.hosts):
        assert f"[127.0.0.1:{h.port}] rank {rank}/3 sum 6" in res.stdout


def test_smoke_test_nodes_passes_with_its_bandwidth_and_a_falling_loss(cluster: Cluster) -> None:
    started = time.monotonic()
    res = cluster.dlenv(
        "smoke-test", *cluster.host_args, "--nodes", "--device", "cpu", "--json", timeout=600
    )
    # torch's elastic agent prints long tracebacks; what the nodes said besides them tells why
    said = [
        ln for ln in (res.stdout + res.stderr).splitlines() if "torch/distributed/elastic" not in ln
    ]
    assert res.returncode == 0, "\n".join(said)[-4000:]
    outcome = json.loads(res.stdout)
    report = outcome["report"]
    assert outcome["verdict"] == "cpu-only" and outcome["reasons"] == []
    assert (report["backend"], report["nnodes"], report["world_size"]) == ("gloo", 3, 3)
    assert [r["node_rank"] for r in report["ranks"]] == ["0", "1", "2"]
    assert report["allreduce"]["sum_verified"]
    assert report["allreduce"]["busbw_gbps"] > 0
    assert report["train"]["loss_fell"] and report["train"]["replicas_in_sync"]
    assert report["train"]["last_loss"] < report["train"]["first_loss"]
    saved = cluster.hosts[0].exec("cat ~/.cache/dlenv/cluster-smoke.json", user="dlenv")
    assert json.loads(saved.stdout)["allreduce"] == report["allreduce"]  # node 0 keeps it
    print(
        f"\n[figures] smoke-test --nodes (3 containers, gloo): busbw "
        f"{report['allreduce']['busbw_gbps']:.2f} Gbps, loss {report['train']['first_loss']:.3f}"
        f" -> {report['train']['last_loss']:.3f}, {time.monotonic() - started:.1f}s"
    )
    text = cluster.dlenv("smoke-test", *cluster.host_args, "--nodes", timeout=600)
    assert text.returncode == 10, text.stderr[-2000:]  # passed, but on the CPU path
    assert "Bus bandwidth:" in text.stdout and "not graded" in text.stdout
    assert "PASS, CPU path: 3 ranks on 3 nodes" in text.stdout


def test_ctrl_c_stops_the_command_on_every_node(cluster: Cluster) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlenv", "run", *cluster.host_args, "--", "sleep", "271"],
        env=cluster.env(),
        cwd=cluster.home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(h.exec("pgrep -f 'sleep 271'").returncode == 0 for h in cluster.hosts):
            break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the command did not start on every node")
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    deadline = time.monotonic() + 20
    while any(h.exec("pgrep -f 'sleep 271'").returncode == 0 for h in cluster.hosts):
        assert time.monotonic() < deadline, "a remote command outlived Ctrl-C"
        time.sleep(0.5)


def test_an_unreachable_node_is_named(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node lost after the cluster was resolved: its exit is 255 and the error names it."""
    from dlenv.ops.nodes import Node
    from dlenv.ops.run import run

    monkeypatch.setenv("DLENV_STATE_DIR", str(cluster.state))
    targets = [h.target() for h in cluster.hosts]
    nodes = [
        Node(k, f"node-{k}", t, a)
        for k, (t, a) in enumerate(zip(targets, cluster.addrs, strict=True))
    ]
    lost = Node(2, "node-2", targets[2].with_(port=1), cluster.addrs[2])
    said: list[str] = []
    out = io.StringIO()
    result = run([*nodes[:2], lost], ["true"], out=out, say=said.append)
    assert [o.code for o in result.outcomes] == [0, 0, 255] and result.exit_code == 255
    assert len(said) == 1 and said[0].startswith("[node-2] cannot reach 127.0.0.1:1"), said


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "dlenv@127.0.0.1;touch /tmp/pwned", "--", "true"], "is not a host name"),
        (["--host", "$(reboot)@127.0.0.1", "--", "true"], "not a valid user name"),
        (["--node", "5", "--", "true"], "--node 5: 3 hosts has nodes 0..2"),
        (["--node", "-1", "--", "true"], "--node -1 is not a node rank"),
        (["--rendezvous-addr", "10.0.0.1;reboot", "--", "true"], "not an IP address or host"),
        (["--"], "give the command to run after --"),
    ],
)
def test_hostile_or_bad_input_is_refused_with_one_line(
    cluster: Cluster, args: list[str], message: str
) -> None:
    base = [] if args[0] == "--host" else cluster.host_args
    if args[0] == "--host":
        args = [*args[:2], "-i", str(cluster.hosts[0].key), *args[2:]]
    res = cluster.dlenv("run", *base, *args)
    assert res.returncode != 0
    assert message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.count("error:") == 1
    assert cluster.hosts[0].exec("test -e /tmp/pwned").returncode == 1
