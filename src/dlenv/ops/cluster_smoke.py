"""`dlenv smoke-test NAME --nodes`: prove a cluster trains as one job and measure its network.

The job (`dlenv_smoke.cluster`, torch + standard library only) is uploaded to every node's
`~/.cache/dlenv/smoke` (so it does not depend on what version a node was provisioned with) and
started with `dlenv-torchrun` on every node through `dlenv run`: an all-reduce bandwidth test
across every node and GPU (NCCL on GPUs, gloo on CPUs) and a few DDP steps whose loss must
fall. Global rank 0 reports; the verdict is decided here, like the single-node test's:

  pass      every node finished, the all-reduce sum is right, the loss fell, replicas agree,
            and (GPUs, several nodes, a known type) the bus bandwidth is not far below the
            type's network figure (exit 0);
  cpu-only  all of that on the CPU path (gloo): not graded against the network (exit 10, or 0
            with --device cpu);
  fail      anything else (exit 1).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from dlenv.errors import DlenvError
from dlenv.ops.nodes import Node, ssh_command
from dlenv.ops.run import RunResult, run
from dlenv.ops.smoke import REMOTE_DIR

EXIT_PASS, EXIT_FAIL, EXIT_CPU_ONLY = 0, 1, 10
REPORT_FILE = "~/.cache/dlenv/cluster-smoke.json"
REPORT_PREFIX = "DLENV_CLUSTER_REPORT "
GOOD_FRACTION = 0.5
"""Bus bandwidth at or above half the network figure is good (NCCL over EFA reaches ~80%)."""
FAIL_FRACTION = 0.1
"""Below a tenth of the network figure the fabric is not in use (EFA missing, TCP fallback)."""


@dataclass(frozen=True)
class Network:
    """What the measured bandwidth is graded against: the instance type's published figure."""

    instance_type: str
    gbps: float


def grade(busbw_gbps: float, network_gbps: float) -> str:
    """good / low / fail: the bus bandwidth as a fraction of the network figure."""
    fraction = busbw_gbps / network_gbps
    if fraction >= GOOD_FRACTION:
        return "good"
    return "low" if fraction >= FAIL_FRACTION else "fail"


def judge(
    report: dict[str, Any] | None,
    result: RunResult,
    *,
    device: str,
    network: Network | None,
) -> dict[str, Any]:
    """The verdict, its reasons and exit code from the job's report and the nodes' exits."""
    reasons = [
        f"{o.name} exited {o.code}" + (f": {o.error}" if o.error else "")
        for o in result.outcomes
        if o.code != 0
    ]
    figure: dict[str, Any] = {"network": None, "grade": None}
    if report is None:
        reasons.append("no report came back from rank 0 (see the nodes' output above)")
    else:
        allreduce, train = report["allreduce"], report["train"]
        if not allreduce["sum_verified"]:
            reasons.append(f"{report['backend']} all-reduce returned a wrong sum")
        if not train["loss_fell"]:
            reasons.append(
                f"the DDP loss did not fall ({train['first_loss']:.4g} -> {train['last_loss']:.4g})"
            )
        if not train["replicas_in_sync"]:
            reasons.append("the DDP replicas' weights differ after training")
        if device == "cuda" and report["device"] != "cuda":
            reasons.append("--device cuda was asked for, but the job ran on the CPU")
        if report["device"] == "cuda" and network is not None and report["nnodes"] > 1:
            figure = {
                "network": {"instance_type": network.instance_type, "gbps": network.gbps},
                "grade": grade(allreduce["busbw_gbps"], network.gbps),
                "fraction": round(allreduce["busbw_gbps"] / network.gbps, 3),
            }
            if figure["grade"] == "fail":
                reasons.append(
                    f"bus bandwidth {allreduce['busbw_gbps']:.1f} Gbps is far below the "
                    f"{network.gbps:g} Gbps network of {network.instance_type} (is EFA in use?)"
                )
    if reasons:
        verdict, code = "fail", EXIT_FAIL
    elif report is not None and report["device"] == "cuda":
        verdict, code = "pass", EXIT_PASS
    else:
        verdict, code = "cpu-only", EXIT_PASS if device == "cpu" else EXIT_CPU_ONLY
    return {
        "verdict": verdict,
        "exit_code": code,
        "reasons": reasons,
        "nodes": [{"rank": o.rank, "name": o.name, "exit_code": o.code} for o in result.outcomes],
        "bandwidth": figure,
        "report": report,
    }


def render_text(outcome: dict[str, Any]) -> str:
    """The human summary: who took part, bandwidth per size, the loss, the verdict."""
    report = outcome["report"]
    lines = []
    if report is not None:
        ar, train = report["allreduce"], report["train"]
        lines.append(
            f"Cluster: {report['nnodes']} node(s) x {report['procs_per_node']} process(es) = "
            f"{report['world_size']} ranks, {report['backend']} on {report['device']}, "
            f"torch {report['torch']}"
        )
        lines.append("All-reduce (bus bandwidth, nccl-tests' 2(n-1)/n formula):")
        for size in ar["sizes"]:
            lines.append(
                f"  {size['size_bytes'] / 2**20:6.0f} MiB  {size['seconds'] * 1e3:9.2f} ms  "
                f"busbw {size['busbw_gbps']:8.2f} Gbps  (algbw {size['algbw_gbps']:.2f})"
            )
        bw = outcome["bandwidth"]
        if bw["network"]:
            net = bw["network"]
            lines.append(
                f"Bus bandwidth: {ar['busbw_gbps']:.1f} Gbps = {bw['fraction']:.0%} of "
                f"{net['instance_type']}'s {net['gbps']:g} Gbps network ({bw['grade']})"
            )
        elif report["device"] == "cpu":
            lines.append(
                f"Bus bandwidth: {ar['busbw_gbps']:.2f} Gbps (CPU path, gloo over TCP: not graded "
                "against a network figure)"
            )
        else:
            lines.append(
                f"Bus bandwidth: {ar['busbw_gbps']:.1f} Gbps (no network figure to grade against)"
            )
        lines.append(
            f"DDP training: {train['steps']} steps, loss {train['first_loss']:.4f} -> "
            f"{train['last_loss']:.4f} ({'fell' if train['loss_fell'] else 'did NOT fall'})"
        )
    lines.append(f"Verdict: {verdict_line(outcome)}  [exit {outcome['exit_code']}]")
    return "\n".join(lines)


def verdict_line(outcome: dict[str, Any]) -> str:
    verdict, report = outcome["verdict"], outcome["report"]
    if verdict == "pass":
        return (
            f"PASS: {report['world_size']} GPUs on {report['nnodes']} nodes train as one job (NCCL)"
        )
    if verdict == "cpu-only":
        return (
            f"PASS, CPU path: {report['world_size']} ranks on {report['nnodes']} nodes train as "
            "one job over gloo (no GPUs; the network figure is not graded)"
        )
    return "FAIL: " + "; ".join(outcome["reasons"][:3])


def upload(nodes: Sequence[Node]) -> None:
    """The `dlenv_smoke` package into every node's ~/.cache/dlenv/smoke, in parallel, over the
    same verified ssh path (a tar on stdin: no file name reaches a shell)."""
    from concurrent.futures import ThreadPoolExecutor

    from dlenv.ops.smoke import package_files
    from dlenv.ssh.command import join

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for local, rel in package_files():
            tar.add(str(local), arcname=rel)
    payload = buf.getvalue()
    remote = (
        "cd ~ && "
        + join(["mkdir", "-p", REMOTE_DIR])
        + " && "
        + join(["tar", "-xzf", "-", "-C", REMOTE_DIR])
    )

    def send(node: Node) -> None:
        from dlenv.ssh.openssh import classify

        try:
            proc = subprocess.run(
                ssh_command(node.target, remote), input=payload, capture_output=True, timeout=120
            )
        except subprocess.TimeoutExpired:
            raise DlenvError(
                f"uploading the smoke test ({len(payload) // 1024} KiB) took over 120 s",
                f"check the node's network (`dlenv ssh {node.name}`), then run the test again",
                host=node.name,
            ) from None
        if proc.returncode == 255:
            err = classify(node.target, proc.stderr.decode(errors="replace"))
            err.host = node.name
            raise err
        if proc.returncode != 0:
            raise DlenvError(
                f"could not unpack the smoke test: {proc.stderr.decode(errors='replace').strip()}",
                host=node.name,
            )

    with ThreadPoolExecutor(max_workers=min(32, len(nodes))) as pool:
        for fut in [pool.submit(send, n) for n in nodes]:
            fut.result()


class _Progress(io.TextIOBase):
    """The nodes' streamed output on stderr, minus the report line (it is summarised)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if REPORT_PREFIX not in text:
            self.stream.write(text)
            self.stream.flush()
        return len(text)


def command(device: str, steps: int) -> list[str]:
    """The words `dlenv run` hands each node's shell: the job under dlenv-torchrun."""
    from dlenv.ssh.command import quote

    if device not in {"auto", "cuda", "cpu"}:
        raise ValueError(device)
    return [
        f'PYTHONPATH="$HOME/{REMOTE_DIR}${{PYTHONPATH:+:$PYTHONPATH}}"',
        "dlenv-torchrun",
        "-m",
        "dlenv_smoke.cluster",
        "--device",
        quote(device),
        "--steps",
        str(int(steps)),
        "--out",
        REPORT_FILE,
    ]


def smoke_test(
    nodes: Sequence[Node],
    *,
    device: str = "auto",
    network: Network | None = None,
    steps: int = 30,
    progress: TextIO | None = None,
) -> dict[str, Any]:
    """Upload, run on every node, judge: the outcome dict (verdict, exit_code, report...)."""
    upload(nodes)
    reports: list[dict[str, Any]] = []

    def on_line(node: Node, text: str) -> None:
        if text.startswith(REPORT_PREFIX):
            reports.append(json.loads(text[len(REPORT_PREFIX) :]))

    result = run(
        nodes,
        command(device, steps),
        out=_Progress(progress or sys.stderr),
        on_line=on_line,
    )
    if result.interrupted:
        raise KeyboardInterrupt
    return judge(reports[0] if reports else None, result, device=device, network=network)


def network_of(settings: Any, name: str) -> Network | None:
    """The network figure of cluster NAME's instance type (None when the catalog lacks it)."""
    from dlenv.cloud import catalog
    from dlenv.cloud.instances import list_environments
    from dlenv.cloud.session import from_settings
    from dlenv.ops.nodes import TAG_CLUSTER

    envs = [
        e for e in list_environments(from_settings(settings)) if e.tags.get(TAG_CLUSTER) == name
    ]
    if not envs:
        return None
    itype = envs[0].instance_type
    try:
        gbps = catalog.lookup(itype).network_gbps
    except DlenvError:
        return None
    return Network(itype, gbps) if gbps else None
