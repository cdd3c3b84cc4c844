"""`dlenv jupyter`: resolve the host, make sure it runs, fetch the token, open the tunnel.

The CLI command is a thin layer over `open_jupyter`; tunnel mechanics live in `dlenv.tunnel`.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import asdict
from typing import Any

from dlenv.config import Settings
from dlenv.errors import UsageError
from dlenv.ssh_target import SshTarget
from dlenv.terminal import Terminal


def resolve_target(
    name: str | None,
    host: str | None,
    identity: str | None,
    settings: Settings,
    terminal: Terminal,
    *,
    yes: bool,
) -> tuple[str, SshTarget]:
    """(display name, SshTarget); a stopped environment is started after confirmation."""
    if bool(name) == bool(host):
        raise UsageError(
            "give an environment NAME or --host USER@HOST (one of them)",
            "e.g. `dlenv jupyter mybox` or `dlenv jupyter --host ubuntu@10.0.0.5 -i key`",
        )
    if host:
        target = SshTarget.parse(host, key_file=identity, proxy_command=settings.ssh_proxy_command)
        return target.label, target
    from dlenv import lifecycle
    from dlenv.cloud import instances
    from dlenv.cloud.session import from_settings

    aws = from_settings(settings)
    env = instances.get(aws, name)
    if env.state in {"stopped", "stopping"}:
        if not terminal.confirm(
            f"{name} is {env.state}. Start it ({env.instance_type})?", assume_yes=yes
        ):
            raise UsageError(f"{name} is stopped", f"start it with `dlenv start {name}`")
        env = lifecycle.start(name, settings, terminal)
        target = lifecycle.ready_for_ssh(aws, name, env, settings, terminal, wait_ssh=True)
        return name, target
    return name, instances.ssh_target_for(name, settings)


def can_open_browser() -> bool:
    if sys.platform in {"darwin", "win32"}:
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


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
) -> dict[str, Any]:
    from dlenv import tunnel

    label, target = resolve_target(name, host, identity, settings, terminal, yes=yes)
    for record in tunnel.open_tunnels():
        if record["name"] == label:
            terminal.info(f"a tunnel to {label} is already open (pid {record['pid']})")
            terminal.result(record["url"])
            return record
    jup = tunnel.remote_jupyter()
    token = tunnel.fetch_token(target, jup, name or f"--host {host}")
    local = tunnel.pick_port(port)
    if local != port:
        terminal.warn(f"local port {port} is in use; using {local} instead")
    url = f"http://127.0.0.1:{local}/lab?token={token}"
    spec = tunnel.TunnelSpec(
        name=label, target=_plain(target), local_port=local, remote_port=jup.port, url=url
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
    return asdict(spec)


def _plain(target: SshTarget) -> dict[str, Any]:
    data = asdict(target)
    for key in ("key_file", "known_hosts"):
        if data.get(key) is not None:
            data[key] = str(data[key])
    return data
