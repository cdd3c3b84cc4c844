"""`dlenv stop NAME` and `dlenv start NAME [--instance TYPE]`: power an environment off and on.

Each runs under the environment's lock. A start that finds no capacity leaves the instance
stopped and says the ways out (wait, another type of the same architecture and GPU count
(`change_type`), or `start --move` to another zone: `dlenv.ops.move`). `up` of a stopped
environment starts it through here as well.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dlenv.config import Settings
from dlenv.errors import DlenvError, UsageError
from dlenv.ops.lifecycle import env_target
from dlenv.terminal import Terminal

if TYPE_CHECKING:
    from dlenv.cloud.instances import Environment
    from dlenv.cloud.session import Aws


def stop(name: str, settings: Settings, terminal: Terminal) -> Environment:
    """Stop NAME under the environment's lock."""
    from dlenv.cloud.session import from_settings
    from dlenv.statefile import env_lock

    aws = from_settings(settings)
    with env_lock(name, say=terminal.info):
        return _stop(aws, name, terminal)


def _stop(aws: Aws, name: str, terminal: Terminal) -> Environment:
    from dlenv.cloud import instances

    env = instances.get(aws, name)
    if env.state in {"stopped", "stopping"}:
        terminal.info(f"{name} is already {env.state}")
        return env
    if env.market == "spot-one-time":
        raise UsageError(
            f"{name} is a one-time spot instance, which EC2 cannot stop",
            f"`dlenv down {name}` removes it; launch with --spot-type persistent to be able to stop",
        )
    with terminal.phase(f"stopping {name} ({env.instance_id})"):
        instances.stop(aws, env.instance_id)
        instances.wait(aws, "instance_stopped", env.instance_id)
    return instances.get(aws, name)


def start(
    name: str, settings: Settings, terminal: Terminal, *, instance_type: str | None = None
) -> Environment:
    """Start NAME under the environment's lock (re-entered when `up` starts a stopped one).

    `instance_type`: change the stopped instance's type first (same disk, same everything):
    the way back when its own type has no capacity in its zone.
    """
    from dlenv.cloud.session import from_settings
    from dlenv.statefile import env_lock

    aws = from_settings(settings)
    with env_lock(name, say=terminal.info):
        return _start(aws, name, settings, terminal, instance_type=instance_type)


def compatible_types(current: str, region: str | None, limit: int = 3) -> list[str]:
    """Types a stopped instance of `current` can switch to and keep working: same CPU
    architecture, an NVIDIA GPU the pinned driver and CUDA support, as many GPUs; closest in
    price first."""
    from dlenv.cloud import catalog

    have = catalog.lookup(current, region)
    fits = [
        t
        for t in catalog.all_types(region)
        if t.name != current
        and t.arch == have.arch
        and t.gpu_count == have.gpu_count
        and catalog.unsupported_reason(t) is None
    ]
    fits.sort(key=lambda t: (abs(t.price_per_hour - have.price_per_hour), t.name))
    return [t.name for t in fits[:limit]]


def change_type(
    aws: Aws, name: str, env: Environment, new_type: str, terminal: Terminal
) -> Environment:
    """Change a stopped environment's instance type after checking the new one fits."""
    from dlenv.cloud import catalog, instances
    from dlenv.errors import UsageError

    if new_type == env.instance_type:
        return env
    new = catalog.launchable(new_type, aws.region_name)  # known, and a GPU the stack runs
    old = catalog.lookup(env.instance_type, aws.region_name)
    if new.arch != old.arch:
        raise UsageError(
            f"{new_type} is {new.arch} but {name}'s disk holds an {old.arch} system",
            f"pick an {old.arch} type: {', '.join(compatible_types(old.name, aws.region_name))}",
        )
    if env.spot:
        raise UsageError(
            f"{name} is a spot instance: AWS does not change a spot instance's type",
            f"wait for capacity (`dlenv start {name}` again later); persistent spot restarts "
            "by itself when capacity returns",
        )
    if env.state != "stopped":
        raise UsageError(
            f"{name} is {env.state}: the type changes only while it is stopped",
            f"`dlenv stop {name}` first",
        )
    instances.set_type(aws, env.instance_id, new_type)
    terminal.info(
        f"{name}: type {old.name} ({old.price_per_hour:.3f} $/h) -> {new.name} "
        f"({new.price_per_hour:.3f} $/h, {new.gpu_summary}); disk and files unchanged"
    )
    return instances.get(aws, name)


def _start(
    aws: Aws,
    name: str,
    settings: Settings,
    terminal: Terminal,
    *,
    instance_type: str | None = None,
) -> Environment:
    from dlenv.cloud import instances
    from dlenv.errors import CapacityError
    from dlenv.ssh import config as sshconfig

    env = instances.get(aws, name)
    if env.state == "running":
        if instance_type and instance_type != env.instance_type:
            from dlenv.errors import UsageError

            raise UsageError(
                f"{name} is running as {env.instance_type}: the type changes only while stopped",
                f"`dlenv stop {name}`, then `dlenv start {name} --instance {instance_type}`",
            )
        terminal.info(f"{name} is already running")
        return env
    if env.state == "stopping":
        instances.wait(aws, "instance_stopped", env.instance_id)
        env = instances.get(aws, name)
    if instance_type:
        env = change_type(aws, name, env, instance_type, terminal)
    with terminal.phase(f"starting {name} ({env.instance_id})"):
        try:
            instances.start(aws, env)
        except CapacityError as exc:
            others = compatible_types(env.instance_type, aws.region_name)
            ways = [f"wait and run `dlenv start {name}` again (capacity comes and goes)"]
            if not env.spot and others:
                ways.append(
                    f"the same disk on another type: `dlenv start {name} --instance {others[0]}`"
                    + (f" (or {', '.join(others[1:])})" if others[1:] else "")
                )
            if _other_zones(aws, env):
                ways.append(
                    f"the same type in another zone: `dlenv start {name} --move` (snapshot, new "
                    "instance there with the same disk, key, group and tags; the old one goes "
                    "once the new one runs)"
                )
            raise CapacityError(
                f"{exc.message}; {name} is still stopped, nothing changed",
                "; or ".join(ways),
                code=exc.code,
            ) from None
        instances.wait(aws, "instance_running", env.instance_id)
    env = instances.get(aws, name)
    # The public IP changes on start; host keys are recorded under the alias dlenv-<name>.
    sshconfig.write_entry(name, env_target(name, env, settings))
    return env


def _other_zones(aws: Aws, env: Environment) -> list[str]:
    """Zones of the region, other than the environment's, that offer its type (for `--move`);
    empty when AWS cannot tell (the error being reported matters more)."""
    from dlenv.cloud import launch

    try:
        return [z for z in launch.offered_zones(aws, env.instance_type) if z != env.az]
    except DlenvError:
        return []
