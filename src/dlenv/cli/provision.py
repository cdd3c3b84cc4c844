"""`dlenv provision`: (re)provision an environment or any SSH box with the dlenv stack."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, json_option, setting_option

if TYPE_CHECKING:
    from dlenv.cli._app import App


def _csv(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


STACK_FLAGS = ("only", "skip", "conda_dist", "conda_installer", "wheelhouse", "ca_bundle", "cpu")
"""Flags of `stack_options` that are not settings (python and idle_stop are settings)."""


def stack_options(func: Any) -> Any:
    """What to install and how: shared by `dlenv provision` and `dlenv up`."""
    decorators: list[Callable[[Any], Any]] = [
        click.option("--only", callback=_csv, metavar="STEP,...", help="Run only these steps."),
        click.option("--skip", callback=_csv, metavar="STEP,...", help="Leave these steps out."),
        setting_option(
            "--python",
            setting="python",
            type=click.Choice(["conda", "uv"]),
            help="Python environment manager.",
        ),
        click.option(
            "--conda-dist",
            type=click.Choice(["miniforge", "anaconda"]),
            default=None,
            help="Conda distribution (default: miniforge).",
        ),
        click.option(
            "--conda-installer",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="Use this local conda installer (still sha256-checked).",
        ),
        click.option(
            "--wheelhouse",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            default=None,
            help="Upload these wheels and install from them first (a torch there is used as is).",
        ),
        click.option(
            "--ca-bundle",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="Extra CA (PEM) trusted by apt/pip/uv/conda (TLS-inspecting proxies).",
        ),
        click.option("--cpu", is_flag=True, help="GPU-less: skip driver/CUDA, CPU torch."),
        setting_option(
            "--requirements",
            setting="requirements",
            metavar="FILE",
            help="Your pip requirements, installed into the env (the stack's torch/numpy "
            "pins held; a changed file re-runs just that step).",
        ),
        setting_option(
            "--conda-env",
            setting="conda_env",
            metavar="FILE",
            help="Your conda environment.yml: its packages go into the env (--python conda), "
            "its pip: section with --requirements.",
        ),
        setting_option(
            "--frameworks",
            setting="frameworks",
            metavar="NAME,...",
            help="More frameworks as their own kernels, each in its own env: tensorflow, jax "
            "(GPU builds on GPU hosts).",
        ),
        setting_option(
            "--idle-stop",
            setting="idle_stop",
            type=int,
            metavar="MIN",
            help="Shut down after MIN idle minutes (0 disables).",
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def build_options(settings: Any, **flags: Any) -> Any:
    """ProvisionOptions from resolved settings plus the `stack_options` flags."""
    from dlenv.provision.options import ProvisionOptions

    return ProvisionOptions(
        python=settings.python,
        idle_stop=settings.idle_stop,
        requirements=Path(settings.requirements) if settings.requirements else None,
        conda_env=Path(settings.conda_env) if settings.conda_env else None,
        packages=tuple(settings.packages or ()),
        frameworks=tuple(settings.frameworks or ()),
        conda_dist=flags.get("conda_dist"),
        conda_installer=flags.get("conda_installer"),
        wheelhouse=flags.get("wheelhouse"),
        ca_bundle=flags.get("ca_bundle"),
        only=tuple(flags.get("only") or ()),
        skip=tuple(flags.get("skip") or ()),
        cpu=bool(flags.get("cpu")),
    )


@click.command("provision")
@click.argument("name", required=False)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="USER@HOST[:PORT]",
    help="Provision this SSH box (repeat for several, run in parallel).",
)
@click.option(
    "-i",
    "--identity",
    "identity",
    type=click.Path(dir_okay=False),
    default=None,
    help="Private key for --host (default: ssh-agent / ~/.ssh keys).",
)
@click.option(
    "--plan", is_flag=True, help="Only run the checks: print what would change, change nothing."
)
@stack_options
@click.option(
    "--trust-new-host-key",
    is_flag=True,
    help="Record an unknown host key in dlenv's known_hosts (verify its fingerprint first).",
)
@json_option
@aws_options
@click.pass_obj
def provision(
    app: App,
    /,
    name: str | None,
    hosts: tuple[str, ...],
    identity: str | None,
    plan: bool,
    only: tuple[str, ...],
    skip: tuple[str, ...],
    python: str | None,
    conda_dist: str | None,
    conda_installer: Path | None,
    wheelhouse: Path | None,
    ca_bundle: Path | None,
    cpu: bool,
    idle_stop: int | None,
    requirements: str | None,
    conda_env: str | None,
    frameworks: str | None,
    trust_new_host_key: bool,
    as_json: bool,
    region: str | None = None,
    profile: str | None = None,
) -> None:
    """Install the dlenv stack (driver, CUDA, Python env, PyTorch, JupyterLab) on hosts.

    \b
    dlenv provision mybox [--plan]                     an environment made by `dlenv up`
    dlenv provision --host ubuntu@10.1.2.3 -i KEY      any SSH box (Ubuntu 22.04/24.04, Debian 12)
    dlenv provision --host a@h1 --host a@h2 ...        several hosts in parallel
    dlenv provision mybox --requirements requirements.txt   your own packages too
    dlenv provision mybox --frameworks tensorflow,jax        a kernel (and env) for each

    Safe to repeat: finished steps are checked and skipped, an interrupted run resumes.
    """
    from dlenv.errors import UsageError
    from dlenv.provision.runner import provision as run_provision
    from dlenv.provision.runner import raise_for_failures

    if bool(name) == bool(hosts):
        raise UsageError(
            "give an environment NAME or --host USER@HOST (not both)",
            "e.g. dlenv provision mybox, or dlenv provision --host ubuntu@10.1.2.3 -i KEY",
        )
    settings = app.settings(
        python=python,
        idle_stop=idle_stop,
        requirements=requirements,
        conda_env=conda_env,
        frameworks=frameworks,
        region=region,
        profile=profile,
    )
    stack_flags = {
        "only": only,
        "skip": skip,
        "conda_dist": conda_dist,
        "conda_installer": conda_installer,
        "wheelhouse": wheelhouse,
        "ca_bundle": ca_bundle,
        "cpu": cpu,
    }
    build_options(settings, **stack_flags)  # a bad file or flag fails before any host is contacted
    terminal = app.terminal
    if name:
        from dlenv.cloud import instances
        from dlenv.cloud.session import from_settings
        from dlenv.ops.lifecycle import target_of_running, with_env_choices
        from dlenv.statefile import env_lock

        # held until the command ends (click closes it): provisioning NAME is a mutation of it
        click.get_current_context().with_resource(env_lock(name, say=terminal.info))
        env = instances.get(from_settings(settings), name)
        settings = with_env_choices(settings, env.tags, terminal)
        targets = [target_of_running(name, settings, terminal)]
    else:
        from dlenv.ssh.openssh import prepare
        from dlenv.ssh.target import from_host_flag

        targets = [from_host_flag(h, identity, settings.ssh_proxy_command) for h in hosts]
        # host keys first, one host at a time (a prompt must not race the progress view)
        import contextlib

        from dlenv.errors import SshTimeoutError, SshUnreachableError

        for target in targets:
            # an unreachable host is reported by the run below, beside the others' results
            with contextlib.suppress(SshUnreachableError, SshTimeoutError):
                prepare(target, trust_new=trust_new_host_key, say=terminal.info)
    options = build_options(settings, **stack_flags)
    results = run_provision(
        targets, options, terminal, plan_only=plan, trust_new_host_key=trust_new_host_key
    )
    if as_json:
        terminal.json([_as_dict(r) for r in results])
    else:
        _report(terminal, results, plan)
    raise_for_failures(results)
    if name and not plan:
        from dlenv.ops.lifecycle import record_choices

        record_choices(name, settings, env.instance_id)


def _as_dict(r: Any) -> dict[str, Any]:
    return {
        "host": r.label,
        "ok": r.ok,
        "seconds": round(r.seconds, 1),
        "applied": r.applied,
        "plan": [{"step": s.name, "status": s.status, "reason": s.reason} for s in r.plan],
        "failed_step": r.failed_step,
        "error": r.error.one_line() if r.error else None,
        "versions": r.versions,
        "notes": r.notes,
        "log": str(r.log_path) if r.log_path else None,
    }


def _report(terminal: Any, results: list[Any], plan: bool) -> None:
    for r in results:
        if plan and r.plan:
            terminal.table(
                ["step", "status", "recorded"],
                [
                    (
                        s.name,
                        s.status + (f" ({s.reason})" if s.reason else ""),
                        s.record.split(" ")[0] if s.record else "",
                    )
                    for s in r.plan
                ],
                title=f"{r.label}: plan",
            )
        if not r.ok:
            continue
        if plan:
            terminal.result(f"{r.label}: {len(r.pending)} step(s) pending; nothing was changed")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in r.versions.items())
        what = (
            f"applied {len(r.applied)} step(s): {', '.join(r.applied)}"
            if r.applied
            else "nothing to do (every step already done)"
        )
        terminal.result(
            f"{r.label}: {what} in {r.seconds:.1f}s" + (f" [{versions}]" if versions else "")
        )
        terminal.note(f"log: {r.log_path}")
