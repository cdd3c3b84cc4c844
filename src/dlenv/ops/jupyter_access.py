"""`dlenv jupyter`: resolve the host, make sure it runs, fetch the token, open the tunnel.

The CLI command is a thin layer over `open_jupyter`; tunnel mechanics live in `dlenv.ssh.tunnel`.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from dlenv.config import Settings
from dlenv.ssh.target import SshTarget
from dlenv.terminal import Terminal


def can_open_browser() -> bool:
    if sys.platform in {"darwin", "win32"}:
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def current_target(target: SshTarget, refresh: dict[str, str]) -> SshTarget | None:
    """Where environment `target.name` is now, for the tunnel supervisor's reconnect: the
    running instance's address from AWS (found by its name tag), else None (stopped, or a
    persistent spot instance waiting for capacity). The login, key, proxy command and host key
    alias stay those of `target`, so the host key is verified exactly as before."""
    import dataclasses

    from dlenv.cloud import instances
    from dlenv.cloud.session import Aws

    if not target.name:
        return target
    aws = Aws(region=refresh.get("region") or None, profile=refresh.get("profile") or None)
    env = instances.find(aws, target.name)
    if env is None or env.state != "running":
        return None
    address = env.public_ip or env.private_ip
    if not address:
        return None
    from dlenv.ssh.target import check_host

    check_host(address, f"the address EC2 reports for {target.name}")
    return dataclasses.replace(target, host=address)


def open_jupyter(
    name: str | None,
    host: str | None,
    identity: str | None,
    settings: Settings,
    terminal: Terminal,
    *,
    port: int = 8888,
    browser: bool = True,
    background: bool = False,
    yes: bool = False,
    trust_new_host_key: bool = False,
) -> dict[str, Any]:
    from dlenv.ops.targets import resolve_target
    from dlenv.ssh import tunnel

    label, target = resolve_target(
        name, host, identity, settings, terminal, yes=yes, trust_new_host_key=trust_new_host_key
    )
    for record in tunnel.open_tunnels(terminal.warn):
        if record["name"] == label:
            terminal.info(f"a tunnel to {label} is already open (pid {record['pid']})")
            terminal.result(record["url"])
            return record
    from dlenv.provision.jupyter import RemoteJupyter

    jup = RemoteJupyter.from_stack()
    token = tunnel.fetch_token(target, jup, name or f"--host {host}")
    local = tunnel.pick_port(port)
    if local != port:
        terminal.warn(f"local port {port} is in use; using {local} instead")
    url = f"http://127.0.0.1:{local}/lab?token={token}"
    refresh = None
    if name:  # an environment: its address changes on every start (spot interruptions too)
        from dlenv.cloud.session import from_settings

        refresh = {
            "resolver": "dlenv.ops.jupyter_access:current_target",
            "region": from_settings(settings).region_name,
            "profile": settings.profile or "",
        }
    spec = tunnel.TunnelSpec(
        name=label,
        target=target,
        local_port=local,
        remote_port=jup.port,
        url=url,
        refresh=refresh,
    )
    if background:
        record = tunnel.start_background(spec)
        terminal.success(
            f"tunnel to {label} runs in the background (pid {record['pid']}); "
            f"`dlenv jupyter --stop {label}` closes it"
        )
        terminal.result(url)
        return record

    def announce() -> None:
        if tunnel.wait_local(local, 60):
            terminal.success(f"JupyterLab on {label} is at (Ctrl-C closes the tunnel):")
            terminal.result(url)
            if browser and can_open_browser():
                import webbrowser

                webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    try:
        tunnel.supervise(spec, terminal.warn)
    except KeyboardInterrupt:
        terminal.info("tunnel closed")
    return {"name": label, "local_port": local, "url": url}
