"""`dlenv status [NAME]`: every environment in one table (one paginated EC2 call)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, json_option

if TYPE_CHECKING:
    from dlenv.cli._app import App
    from dlenv.cloud.instances import Environment
    from dlenv.cloud.session import Aws
    from dlenv.config import Settings
    from dlenv.terminal import Terminal


def _duration(hours: float) -> str:
    minutes = int(hours * 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


@click.command()
@click.argument("name", required=False)
@click.option(
    "--idle",
    "read_idle",
    is_flag=True,
    help="Also read each running environment's idle countdown and budget spend (over SSH).",
)
@json_option
@aws_options
@click.pass_obj
def status(app: App, /, name: str | None, read_idle: bool, as_json: bool, **aws_flags: Any) -> None:
    """Show environments: type, GPU, state, IP, uptime, $/h, cost so far, budget, storage.

    \b
    The last lines add up what is being paid for now: running machines per hour, and every
    environment's disks (stopped ones included) and baked images per month.
    """
    from dlenv.cloud import catalog, images, instances
    from dlenv.cloud.session import from_settings
    from dlenv.ops.lifecycle import stack_fingerprint
    from dlenv.provision.idle import BUDGET_TAG

    settings = app.settings(**aws_flags)
    aws = from_settings(settings)
    envs = instances.list_environments(aws, name)
    if name and not envs:  # NAME may be a cluster: its nodes are NAME-0 .. NAME-{N-1}
        from dlenv.cloud.cluster import TAG_CLUSTER

        envs = [e for e in instances.list_environments(aws) if e.tags.get(TAG_CLUSTER) == name]
    if name and not envs:
        from dlenv.errors import NotFoundError

        raise NotFoundError(
            f"no environment named {name!r} in {aws.region_name}",
            "`dlenv status` lists all environments",
        )
    current = stack_fingerprint()
    disks = instances.volume_sizes(aws, [e.instance_id for e in envs if e.state != "terminated"])
    baked = [] if name else images.list_baked(aws)
    rows: list[dict[str, Any]] = []
    for env in envs:
        try:
            itype = catalog.lookup(env.instance_type, aws.region_name)
            price, gpu = itype.price_per_hour, itype.gpu_summary
        except Exception:
            price, gpu = None, "?"
        hours = env.hours_running()
        rows.append(
            {
                "name": env.name,
                "instance_id": env.instance_id,
                "type": env.instance_type,
                "gpu": gpu,
                "state": env.state,
                "ip": env.public_ip,
                "az": env.az,
                "market": env.market,  # on-demand, spot-persistent or spot-one-time
                "uptime_hours": round(hours, 3),
                "price_per_hour": price,
                "cost_so_far": round(hours * price, 2) if price is not None else None,
                "stack": env.stack,
                "stack_current": env.stack == current,
                "interrupted": env.interrupted,
                "state_reason": env.state_reason,
                "budget_usd": _budget(env.tags.get(BUDGET_TAG)),
                "disk_gb": disks.get(env.instance_id, 0),
                "disk_per_month": round(
                    disks.get(env.instance_id, 0) * instances.VOLUME_PRICE_GB_MONTH, 2
                ),
            }
        )
    if read_idle:
        idle_states = _idle_states(aws, [e for e in envs if e.state == "running"], settings)
        for row in rows:
            row["idle"] = idle_states.get(row["name"])
    image_rows: list[dict[str, Any]] = [
        {"image_id": b.image_id, "name": b.name, "size_gb": b.size_gb, "per_month": b.monthly_cost}
        for b in baked
    ]
    totals = {
        "running_per_hour": round(
            sum(r["price_per_hour"] or 0 for r in rows if r["state"] == "running"), 3
        ),
        "disks_per_month": round(sum(r["disk_per_month"] for r in rows), 2),
        "images_per_month": round(sum(i["per_month"] for i in image_rows), 2),
    }
    from dlenv.ssh.tunnel import open_tunnels

    tunnels = [
        {k: t[k] for k in ("name", "pid", "local_port")} for t in open_tunnels(app.terminal.warn)
    ]
    from dlenv.ops.cluster_up import views

    # `status NAME-1` shows that node alone, not a cluster that looks partial
    clusters = [c for c in views(envs) if name in (None, c.name)]
    if as_json:
        app.terminal.json(
            {
                "region": aws.region_name,
                "environments": rows,
                "clusters": [
                    {
                        "name": c.name,
                        "nodes": c.expected,
                        "running": len(c.running),
                        "state": c.state,
                        "missing": [f"{c.name}-{r}" for r in c.missing_ranks()],
                    }
                    for c in clusters
                ],
                "images": image_rows,
                "totals": totals,
                "tunnels": tunnels,
            }
        )
        return
    for t in tunnels:
        app.terminal.info(
            f"tunnel open: {t['name']} -> http://127.0.0.1:{t['local_port']} (pid {t['pid']})"
        )
    if not rows:
        app.terminal.info(f"no dlenv environments in {aws.region_name} (create one: dlenv up NAME)")
        return
    # Nine columns fit a 100-column terminal; the IP, market and full stack id are in --json
    # (and `ssh dlenv-NAME` needs no IP). Spot and an old stack show where they matter.
    table = []
    for r in rows:
        state = r["state"]
        if r["interrupted"]:
            state += (
                " (spot interrupted: AWS restarts it when capacity returns)"
                if r["market"] == "spot-persistent"
                else " (spot interrupted)"
            )
        if not r["stack_current"]:
            state += " (old stack)"
        table.append(
            [
                r["name"],
                r["type"] + (" spot" if r["market"].startswith("spot") else ""),
                r["gpu"],
                state,
                _duration(r["uptime_hours"]) if r["state"] == "running" else "-",
                f"{r['price_per_hour']:.3f}" if r["price_per_hour"] is not None else "?",
                f"{r['cost_so_far']:.2f}" if r["cost_so_far"] is not None else "?",
                f"{r['budget_usd']:.2f}" if r["budget_usd"] is not None else "-",
                f"{r['disk_per_month']:.2f}" if r["disk_gb"] else "-",
            ]
        )
    app.terminal.table(
        ["NAME", "TYPE", "GPU", "STATE", "UP", "$/H", "$ SO FAR", "BUDGET $", "DISK $/MO"],
        table,
        title=f"dlenv environments in {aws.region_name}",
    )
    for c in clusters:  # nodes are rows above (NAME-K); each cluster in one line
        (app.terminal.info if c.state == "complete" else app.terminal.warn)(c.summary())
    _print_totals(app.terminal, totals, rows, image_rows)
    for r in rows:
        if r.get("idle"):
            app.terminal.info(f"{r['name']}: {r['idle']}")
    if not read_idle and any(r["state"] == "running" for r in rows):
        # the countdown lives on each machine (its idle check's status file): reading it costs
        # one SSH round trip per machine, so only on request
        app.terminal.note("idle countdowns and budget spend: `dlenv status --idle`")


def _idle_states(aws: Aws, envs: list[Environment], settings: Settings) -> dict[str, str]:
    """{name: one line} read from each host's idle status, in parallel, 8 s per host at most.

    Only hosts this machine already knows (host key recorded, private key here) are asked:
    status never trusts a new key or reads a console.
    """
    from concurrent.futures import ThreadPoolExecutor

    from dlenv.cloud import instances
    from dlenv.cloud.keys import private_key_path
    from dlenv.provision import idle
    from dlenv.ssh.known_hosts import has_keys

    def one(env: Environment) -> str:
        key = private_key_path(env.name)
        if not has_keys(f"dlenv-{env.name}") or not key.exists():
            return "idle: unknown (not yet reached from this machine: `dlenv ssh " + env.name + "`)"
        try:
            state = idle.read_status(instances.target_of(env, settings, key), connect_timeout=8)
        except Exception as exc:  # one line per host, never a traceback
            first = (str(getattr(exc, "message", exc)).splitlines() or [type(exc).__name__])[0]
            return f"idle: unknown ({first[:120]})"
        return state.describe() if state else "idle: no status yet (the timer runs every minute)"

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip([e.name for e in envs], pool.map(one, envs), strict=True))


def _budget(tag: str | None) -> float | None:
    """The dlenv:budget tag as a number (tags are input: anything else reads as none)."""
    try:
        value = float(tag) if tag is not None else None
    except ValueError:
        return None
    return value if value is not None and 0 < value < 1e6 else None


def _print_totals(
    terminal: Terminal,
    totals: dict[str, float],
    rows: list[dict[str, Any]],
    image_rows: list[dict[str, Any]],
) -> None:
    """Cost lines under the table: what runs now, and what storage costs every month."""
    running = [r for r in rows if r["state"] == "running"]
    terminal.info(
        f"running now: {totals['running_per_hour']:.3f} $/h ({len(running)} environment(s)); "
        "stopped ones cost only their disks"
    )
    storage = totals["disks_per_month"] + totals["images_per_month"]
    terminal.info(
        f"storage: {storage:.2f} $/month = disks {totals['disks_per_month']:.2f} "
        f"({sum(r['disk_gb'] for r in rows)} GB gp3) + baked images "
        f"{totals['images_per_month']:.2f} ({len(image_rows)} image(s), "
        f"{sum(i['size_gb'] for i in image_rows)} GB of snapshots; `dlenv ami list`)"
    )
