"""`dlenv run NAME -- CMD ...`: a command on every node of a cluster, output prefixed by node.

Only click is imported at module level (`dlenv --help` imports every command module).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, identity_option, trust_new_host_key_option

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name", required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="USER@HOST[:PORT]",
    help="Any SSH boxes as the cluster instead of NAME (repeat; rank = the order given).",
)
@identity_option
@trust_new_host_key_option
@click.option(
    "--node", "node", type=int, default=None, metavar="K", help="Run on node K only (its rank)."
)
@click.option(
    "--rendezvous-addr",
    metavar="ADDR",
    help="Node 0's address as the nodes reach it (default: its private address).",
)
@aws_options
@click.pass_obj
def run(
    app: App,
    /,
    name: str | None,
    command: tuple[str, ...],
    hosts: tuple[str, ...],
    identity: str | None,
    trust_new_host_key: bool,
    node: int | None,
    rendezvous_addr: str | None,
    **aws_flags: Any,
) -> None:
    """Run COMMAND on every node of cluster NAME at once (or on --node K).

    \b
    dlenv run mycluster -- nvidia-smi -L
    dlenv run mycluster -- dlenv-torchrun train.py       one DDP job on every node and GPU
    dlenv run mycluster --node 0 -- cat /etc/dlenv/cluster.env
    dlenv run --host ubuntu@10.0.0.5 --host ubuntu@10.0.0.6 -i KEY -- dlenv-torchrun train.py

    Each node runs it in ~/work with the dlenv Python environment and /etc/dlenv/cluster.env
    exported (DLENV_NODE_RANK, DLENV_NNODES, DLENV_GPUS_PER_NODE, MASTER_ADDR, ...); the words
    reach the remote shell like `ssh HOST -- WORDS`, so '$DLENV_NNODES' expands there. Ctrl-C
    stops the command on every node. Exit code: the worst of the nodes' (255: unreachable).
    """
    from dlenv.ops import nodes as cluster
    from dlenv.ops.run import run as run_on
    from dlenv.ops.run import select

    if hosts and name:  # `dlenv run --host a --host b -- hostname`: the command lands in NAME
        command = (name, *command)
        name = None
    settings = app.settings(**aws_flags)
    if node is not None and node < 0:
        from dlenv.errors import UsageError

        raise UsageError(f"--node {node} is not a node rank", "ranks are 0, 1, ... N-1")
    label, members = cluster.resolve(
        name,
        hosts,
        settings,
        identity=identity,
        trust_new_host_key=trust_new_host_key,
        rendezvous_addr=rendezvous_addr,
        say=app.terminal.info,
    )
    chosen = select(members, node, label)
    if not command:
        from dlenv.errors import UsageError

        raise UsageError(
            "give the command to run after --", f"e.g. dlenv run {name or '--host ...'} -- hostname"
        )
    result = run_on(chosen, command, say=app.terminal.info)
    failed = [o for o in result.outcomes if o.code != 0]
    if failed and not result.interrupted:
        app.terminal.error(
            "failed on "
            + ", ".join(
                f"{o.name} (exit {o.code}{', unreachable' if o.error else ''})" for o in failed
            )
        )
    sys.exit(result.exit_code)
