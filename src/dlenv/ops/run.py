"""`dlenv run`: one command on every node of a cluster at once, output prefixed by node.

Each node runs the command over the verified OpenSSH path (`dlenv ssh`'s options: host keys
checked, BatchMode) with a remote terminal, in `~/work`, with the dlenv Python environment first
on PATH (the `/etc/profile.d/dlenv-*.sh` a login shell reads) and `/etc/dlenv/cluster.env`
exported. Closing the connection hangs the remote terminal up, so Ctrl-C here (or one node's
ssh dying) stops the remote commands too instead of leaving torchrun workers behind.

The command's words are joined by spaces and run by the remote shell, exactly as ssh(1) runs
`ssh HOST -- WORDS`, so `'$DLENV_NNODES'` (quoted here) expands there.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dlenv.errors import UsageError
from dlenv.ops.nodes import CLUSTER_ENV, Node, ssh_command

UNREACHABLE = 255
"""ssh(1)'s own failure code: the node could not be reached (or refused us)."""
INTERRUPTED = 130

Say = Callable[[str], None]


class Writer(Protocol):
    """Where the prefixed lines go (a text stream)."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class NodeOutcome:
    rank: int
    name: str
    code: int
    error: str | None = None
    """Why the node could not run the command (unreachable, host key), when that is the case."""


@dataclass(frozen=True)
class RunResult:
    outcomes: list[NodeOutcome]
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        """The worst exit code: 0 only when every node's command exited 0."""
        if self.interrupted:
            return INTERRUPTED
        return max((o.code for o in self.outcomes), default=0)


def remote_line(command: Sequence[str], workdir: str = "~/work") -> str:
    """The remote shell line: the env's PATH, cluster.env exported, cd `workdir`, the command."""
    if not command:
        raise UsageError("give the command to run after --", "e.g. dlenv run mycluster -- hostname")
    if any("\0" in w for w in command):
        raise UsageError("the command contains a NUL byte")
    if workdir != "~/work":
        from dlenv.ssh.command import quote

        workdir = quote(workdir)
    return (
        'for f in /etc/profile.d/dlenv-*.sh; do if [ -r "$f" ]; then . "$f"; fi; done\n'
        f"if [ -r {CLUSTER_ENV} ]; then set -a; . {CLUSTER_ENV}; set +a; fi\n"
        f"mkdir -p {workdir} && cd {workdir} || exit 1\n" + " ".join(command) + "\n"
    )


def select(nodes: Sequence[Node], node: int | None, label: str) -> list[Node]:
    """All nodes, or the one of rank `node` (refused with the valid range otherwise)."""
    if node is None:
        return list(nodes)
    chosen = [n for n in nodes if n.rank == node]
    if not chosen:
        raise UsageError(
            f"--node {node}: {label} has nodes 0..{len(nodes) - 1}",
            "give a rank in that range, or leave --node out to run on every node",
        )
    return chosen


def run(
    nodes: Sequence[Node],
    command: Sequence[str],
    *,
    out: Writer | None = None,
    say: Say | None = None,
    on_line: Callable[[Node, str], None] | None = None,
    workdir: str = "~/work",
) -> RunResult:
    """Run `command` on `nodes` in parallel; every output line is written to `out` as
    `[NAME] line` (and handed to `on_line`); returns each node's exit code."""
    out = out or sys.stdout
    say = say or (lambda text: print(text, file=sys.stderr))
    line = remote_line(command, workdir)
    lock = threading.Lock()
    procs: list[subprocess.Popen[bytes]] = []
    errors: dict[int, list[str]] = {}
    for node in nodes:
        argv = ssh_command(node.target, line, tty=True)
        # LogLevel=ERROR: no "Connection to X closed." after each node's output
        argv.insert(1, "-oLogLevel=ERROR")
        procs.append(
            subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )

    def pump(node: Node, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\r\n").replace("\r", "")
            with lock:
                out.write(f"[{node.name}] {text}\n")
                out.flush()
            if on_line is not None:
                on_line(node, text)

    def drain(node: Node, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        errors[node.rank] = proc.stderr.read().decode("utf-8", "replace").splitlines()

    threads = [
        threading.Thread(target=fn, args=(n, p), daemon=True)
        for n, p in zip(nodes, procs, strict=True)
        for fn in (pump, drain)
    ]
    for t in threads:
        t.start()
    interrupted = False
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: stopping the command on every node")
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for t in threads:
            t.join(10)
    outcomes = []
    for node, proc in zip(nodes, procs, strict=True):
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        error = None
        if code == UNREACHABLE and not interrupted:
            from dlenv.ssh.openssh import classify

            err = classify(node.target, "\n".join(errors.get(node.rank, [])))
            hint = f" ({err.hint})" if err.hint else ""
            error = f"{err.message}{hint}"
            say(f"[{node.name}] {error}")
        elif code < 0:  # ssh itself was killed by a signal
            code = INTERRUPTED if interrupted else 1
        outcomes.append(NodeOutcome(node.rank, node.name, code, error))
    return RunResult(outcomes, interrupted)
