"""`dlenv smoke-test`: run the bundled PyTorch smoke test and exit with its verdict.

Only click is imported at module level (`dlenv --help` imports every command module).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from dlenv.cli.options import aws_options, identity_option, json_option, trust_new_host_key_option

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.command("smoke-test")
@click.argument("name", required=False)
@click.option(
    "--host",
    "host_specs",
    multiple=True,
    metavar="USER@HOST[:PORT]",
    help="Run on any SSH box instead of a dlenv environment (repeat with --nodes).",
)
@click.option(
    "--nodes",
    "nodes",
    is_flag=True,
    help="NAME is a cluster (or the --host boxes are one): all-reduce bandwidth and DDP "
    "training across every node and GPU.",
)
@click.option(
    "--rendezvous-addr",
    metavar="ADDR",
    help="--nodes: node 0's address as the nodes reach it (default: its private address).",
)
@identity_option
@trust_new_host_key_option
@click.option("--local", is_flag=True, help="Run on this machine.")
@click.option(
    "--python",
    "python_path",
    metavar="PATH",
    help="Interpreter to run the job with (default: the one running dlenv). The job "
    "needs only torch there, not dlenv.",
)
@click.option(
    "--quick/--full",
    default=True,
    show_default=True,
    help="~15 s or ~60 s budget (full gives steadier figures).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cuda", "cpu"]),
    default="auto",
    show_default=True,
    help="auto: the GPU when usable, else CPU (exit 10); cuda: fail without a GPU; "
    "cpu: test the CPU path on purpose.",
)
@click.option(
    "--expect-gpus",
    type=int,
    default=None,
    metavar="N",
    help="GPUs the machine should have; fewer visible is a failure.",
)
@json_option
@aws_options
@click.pass_obj
def smoke_test(
    app: App,
    /,
    name: str | None,
    host_specs: tuple[str, ...],
    nodes: bool,
    rendezvous_addr: str | None,
    identity: str | None,
    trust_new_host_key: bool,
    local: bool,
    python_path: str | None,
    quick: bool,
    device: str,
    expect_gpus: int | None,
    as_json: bool,
    region: str | None = None,
    profile: str | None = None,
) -> None:
    """Prove PyTorch works: diagnosis, a real training run, figures vs datasheet peak.

    \b
    Exit codes: 0 passed on GPU (or on CPU with --device cpu),
                10 passed but no usable GPU (CPU only), 1 failed.
    \b
    dlenv smoke-test mybox                 on an environment (over SSH)
    dlenv smoke-test --host ubuntu@10.0.0.5 -i key
    dlenv smoke-test --local --device cpu --json
    dlenv smoke-test mycluster --nodes         across every node of a cluster (`up --nodes`)
    dlenv smoke-test --host u@h1 --host u@h2 -i key --nodes
    """
    from dlenv.errors import UsageError
    from dlenv.ops import smoke

    if nodes:
        _cluster(
            app,
            name,
            host_specs,
            identity,
            trust_new_host_key,
            rendezvous_addr,
            device,
            as_json,
            region,
            profile,
        )
    if len(host_specs) > 1:
        raise UsageError("several --host boxes are a cluster", "add --nodes to test them as one")
    if rendezvous_addr:
        raise UsageError("--rendezvous-addr is for --nodes", "add --nodes, or leave it out")
    host_spec = host_specs[0] if host_specs else None

    chosen = [
        what for what, given in (("NAME", name), ("--host", host_spec), ("--local", local)) if given
    ]
    if not chosen:
        raise UsageError(
            "say where to run the smoke test", "dlenv smoke-test NAME, --host USER@HOST or --local"
        )
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} both say where to run; give only one")
    args = smoke.job_args(as_json=as_json, quick=quick, device=device, expect_gpus=expect_gpus)
    if not local:
        from dlenv.ops.targets import resolve_target

        _, target = resolve_target(
            name,
            host_spec,
            identity,
            app.settings(region=region, profile=profile),
            app.terminal,
            yes=False,
            trust_new_host_key=trust_new_host_key,
        )
        raise SystemExit(smoke.run_remote(target, args, name or f"--host {host_spec}"))
    # SystemExit, not ctx.exit: with standalone_mode=False click's main() *returns* an Exit's
    # code and run_cli currently drops it, which would turn a failed verdict into exit 0.
    sys.exit(smoke.run_local(args, python=python_path))


def _cluster(
    app: App,
    name: str | None,
    hosts: tuple[str, ...],
    identity: str | None,
    trust_new_host_key: bool,
    rendezvous_addr: str | None,
    device: str,
    as_json: bool,
    region: str | None,
    profile: str | None,
) -> None:
    """`--nodes`: the cluster test (dlenv.ops.cluster_smoke); exits with its verdict."""
    import json

    from dlenv.ops import cluster_smoke
    from dlenv.ops.nodes import resolve

    settings = app.settings(region=region, profile=profile)
    label, members = resolve(
        name,
        hosts,
        settings,
        identity=identity,
        trust_new_host_key=trust_new_host_key,
        rendezvous_addr=rendezvous_addr,
        say=app.terminal.info,
    )
    network = cluster_smoke.network_of(settings, name) if name else None
    app.terminal.info(f"cluster smoke test on {label}: {len(members)} node(s)")
    outcome = cluster_smoke.smoke_test(members, device=device, network=network)
    if as_json:
        app.terminal.result(json.dumps(outcome, indent=2, sort_keys=True))
    else:
        app.terminal.result(cluster_smoke.render_text(outcome))
    raise SystemExit(outcome["exit_code"])
