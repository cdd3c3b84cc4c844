"""`dlenv status [NAME]`: every environment in one table (one paginated EC2 call)."""

from __future__ import annotations

import click

from dlenv.cli.options import aws_options, json_option


def _duration(hours: float) -> str:
    minutes = int(hours * 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


@click.command()
@click.argument("name", required=False)
@json_option
@aws_options
@click.pass_obj
def status(app, name: str | None, as_json: bool, **aws_flags) -> None:
    """Show environments: type, GPU, state, IP, uptime, $/h, cost so far, stack."""
    from dlenv.cloud import catalog, instances
    from dlenv.cloud.session import from_settings
    from dlenv.lifecycle import stack_fingerprint

    settings = app.settings(**aws_flags)
    aws = from_settings(settings)
    envs = instances.list_environments(aws, name)
    if name and not envs:
        from dlenv.errors import NotFoundError

        raise NotFoundError(
            f"no environment named {name!r} in {aws.region_name}",
            "`dlenv status` lists all environments",
        )
    current = stack_fingerprint()
    rows = []
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
                "market": "spot" if env.spot else "on-demand",
                "uptime_hours": round(hours, 3),
                "price_per_hour": price,
                "cost_so_far": round(hours * price, 2) if price is not None else None,
                "stack": env.stack,
                "stack_current": env.stack == current,
                "interrupted": env.interrupted,
                "state_reason": env.state_reason,
            }
        )
    from dlenv.ssh.tunnel import open_tunnels

    tunnels = [
        {k: t[k] for k in ("name", "pid", "local_port")} for t in open_tunnels(app.terminal.warn)
    ]
    if as_json:
        app.terminal.json({"region": aws.region_name, "environments": rows, "tunnels": tunnels})
        return
    for t in tunnels:
        app.terminal.info(
            f"tunnel open: {t['name']} -> http://127.0.0.1:{t['local_port']} (pid {t['pid']})"
        )
    if not rows:
        app.terminal.info(f"no dlenv environments in {aws.region_name} (create one: dlenv up NAME)")
        return
    table = []
    for r in rows:
        state = r["state"] + (" (spot interrupted)" if r["interrupted"] else "")
        stack = (r["stack"] or "?") + ("" if r["stack_current"] else " (old)")
        table.append(
            [
                r["name"],
                r["type"],
                r["gpu"],
                state,
                r["ip"] or "-",
                _duration(r["uptime_hours"]) if r["state"] == "running" else "-",
                f"{r['price_per_hour']:.3f}" if r["price_per_hour"] is not None else "?",
                f"{r['cost_so_far']:.2f}" if r["cost_so_far"] is not None else "?",
                r["market"],
                stack,
            ]
        )
    app.terminal.table(
        ["NAME", "TYPE", "GPU", "STATE", "IP", "UPTIME", "$/H", "$ SINCE START", "MARKET", "STACK"],
        table,
        title=f"dlenv environments in {aws.region_name}",
    )
