"""`dlenv start NAME --move`: a stopped environment whose zone has no capacity moves to a zone of
the same region that offers its type, disk and all.

Order, chosen so that nothing is lost at any step:
1. snapshot the root volume and wait until the snapshot is complete;
2. register an image from the snapshot;
3. launch from it in another zone (each zone offering the type, in turn, until one has capacity)
   with the same key pair, security group, type, market and tags (`dlenv:name`, work folder,
   budget, python, ...), and wait until it runs;
4. only then terminate the old instance, deregister the image and delete the snapshot.

Until step 3 succeeds, any failure or interrupt rolls back what this move made (found by its tag
`dlenv:move`, not by what this process believes it made) and the old instance is untouched, still
stopped. Once the new instance runs the move is done in substance: an interrupt during step 4 is
finished by the next `dlenv start NAME --move` (the new instance carries `dlenv:moved-from`).
The environment's lock is held throughout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dlenv.errors import DlenvError, UsageError

if TYPE_CHECKING:
    from dlenv.cloud.instances import Environment
    from dlenv.cloud.session import Aws
    from dlenv.config import Settings
    from dlenv.terminal import Terminal

SETTLE_SECONDS = 10.0
"""How long an interrupted create call may take to show up in AWS's answers."""


@dataclass(frozen=True)
class MoveResult:
    name: str
    old_instance: str
    new_instance: str
    old_zone: str
    new_zone: str
    env: Environment
    resumed: bool = False
    """True when this run finished a move an earlier, interrupted run had brought to step 4."""


def move(name: str, settings: Settings, terminal: Terminal) -> MoveResult:
    """Move stopped NAME to another zone, under the environment's lock."""
    from dlenv.cloud.session import from_settings
    from dlenv.statefile import env_lock

    aws = from_settings(settings)
    with env_lock(name, say=terminal.info):
        return _move(aws, name, settings, terminal)


def _move(aws: Aws, name: str, settings: Settings, terminal: Terminal) -> MoveResult:
    from dlenv.cloud import catalog, instances, launch, network
    from dlenv.cloud import move as cloud_move

    live = instances.list_environments(aws, name)
    if not live:
        instances.get(aws, name)  # the "no environment named" error
    resumed = _resume(aws, name, live, settings, terminal)
    if resumed is not None:
        return resumed
    _clear_leftovers(aws, name, terminal)
    env = instances.get(aws, name)
    if env.state == "stopping":
        instances.wait(aws, "instance_stopped", env.instance_id)
        env = instances.get(aws, name)
    if env.state != "stopped":
        raise UsageError(
            f"{name} is {env.state} in {env.az}: only a stopped environment moves",
            f"`dlenv stop {name}` first"
            if env.state == "running"
            else f"wait until it is stopped (`dlenv status {name}`)",
        )
    old_zone = env.az or "?"
    itype = catalog.lookup(env.instance_type, aws.region_name)
    subnets = network.default_subnets(aws, network.default_vpc(aws))
    zones = [z for z in launch.offered_zones(aws, env.instance_type) if z != env.az]
    if not [z for z in zones if z in subnets]:
        raise UsageError(
            f"no other zone of {aws.region_name} offers {env.instance_type} "
            f"(it is offered in {env.az} only)",
            f"`dlenv start {name} --instance TYPE` picks another type, or wait for capacity",
        )
    if not env.key_name or not env.security_groups:
        raise UsageError(
            f"{name} ({env.instance_id}) has no key pair or security group to carry over",
            f"`dlenv down {name}` and `dlenv up {name}` make a fresh one",
        )

    move_id = launch.new_launch_id()
    marks = {"dlenv:name": name, cloud_move.TAG_MOVE: move_id}
    marks[cloud_move.TAG_MOVED_FROM] = env.instance_id
    terminal.info(
        f"moving {name} ({env.instance_id}, {env.instance_type}) out of {old_zone}: "
        f"snapshot, then a new instance in {' or '.join(zones)}; the old one stays until the new "
        "one runs"
    )
    try:
        disk = cloud_move.root_disk(
            aws, env.instance_id, "arm64" if itype.arch == "arm64" else "x86_64"
        )
        with terminal.phase(f"snapshot of {disk.volume_id} ({disk.size_gb} GB)"):
            snap = cloud_move.snapshot(aws, disk, marks)
        with terminal.phase(f"image from {snap}"):
            image = cloud_move.register(aws, f"dlenv-move-{name}-{move_id[:8]}", snap, disk, marks)
        tags = {
            k: v
            for k, v in env.tags.items()
            if not k.startswith("aws:") and k not in {"dlenv:market", launch.TAG_LAUNCH}
        }
        tags.update({launch.TAG_LAUNCH: move_id, **marks})
        spot = env.market.startswith("spot")
        spec = launch.LaunchSpec(
            env=name,
            itype=itype,
            image_id=image,
            root_device=disk.device,
            key_name=env.key_name,
            security_group=env.security_groups[0],
            subnets=subnets,
            disk_gb=disk.size_gb,
            spot=spot,
            spot_type="one-time" if env.market == "spot-one-time" else "persistent",
            spot_fallback="none",
            tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            launch_id=move_id,
        )
        with terminal.phase(f"launching {env.instance_type} from {image}"):
            inst = launch.run(aws, spec, zones, terminal.info)
        new_id = inst.instance_id
        with terminal.phase(f"waiting for {new_id} to run"):
            instances.wait(aws, "instance_running", new_id)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        if interrupted:
            terminal.warn(
                f"interrupted: undoing this move of {name} (found by its tag "
                f"{cloud_move.TAG_MOVE}={move_id}); {env.instance_id} is untouched"
            )
        # an interrupted create call may still be carried out: ask AWS again for a while
        undone, left = _rollback(aws, name, move_id, terminal, settle=interrupted)
        kept = f"{name} is still stopped in {old_zone} ({env.instance_id}), untouched"
        removed = f"removed what the move made: {', '.join(undone)}" if undone else ""
        remains = (
            f"left in AWS: {', '.join(left)} (`dlenv start {name} --move` again removes them)"
            if left
            else "nothing else remains"
        )
        if interrupted:
            terminal.info("; ".join(x for x in (kept, removed, remains) if x))
            raise
        if isinstance(exc, DlenvError):
            if removed:
                terminal.note(removed)
            exc.message = f"{exc.message}; the move did not happen: {kept}" + (
                f"; {remains}" if left else ""
            )
            raise
        raise
    new_env = next(e for e in instances.list_environments(aws, name) if e.instance_id == new_id)
    _finish(aws, name, env, new_env, move_id, settings, terminal)
    return MoveResult(
        name, env.instance_id, new_id, old_zone, new_env.az or "?", instances.get(aws, name)
    )


def _resume(
    aws: Aws, name: str, live: list[Environment], settings: Settings, terminal: Terminal
) -> MoveResult | None:
    """Finish a move an earlier run interrupted after its new instance was launched."""
    from dlenv.cloud import instances
    from dlenv.cloud import move as cloud_move

    ids = {e.instance_id: e for e in live}
    for new in live:
        moved_from = new.tags.get(cloud_move.TAG_MOVED_FROM)
        if moved_from is None:
            continue
        old = ids.get(moved_from)
        if old is not None and new.state not in {"pending", "running"}:
            continue  # launched but never ran: a failed try, removed by _clear_leftovers
        terminal.info(
            f"finishing the earlier move of {name}: {new.instance_id} ({new.az}) replaces "
            f"{moved_from}" + (f" ({old.az})" if old else " (already removed)")
        )
        if new.state == "pending":
            instances.wait(aws, "instance_running", new.instance_id)
        new = next(
            e for e in instances.list_environments(aws, name) if e.instance_id == new.instance_id
        )
        _finish(aws, name, old, new, new.tags.get(cloud_move.TAG_MOVE, ""), settings, terminal)
        return MoveResult(
            name,
            moved_from,
            new.instance_id,
            (old.az if old else None) or "?",
            new.az or "?",
            instances.get(aws, name),
            resumed=True,
        )
    return None


def _finish(
    aws: Aws,
    name: str,
    old: Environment | None,
    new: Environment,
    move_id: str,
    settings: Settings,
    terminal: Terminal,
) -> None:
    """Step 4: the new instance runs; remove the old one, then the image and snapshot, then
    the move's tags (last: until then a rerun finds the move and finishes it)."""
    from dlenv.cloud import move as cloud_move
    from dlenv.ops.lifecycle import env_target
    from dlenv.ssh import config as ssh_config
    from dlenv.ssh.known_hosts import remove_host

    # A new instance id makes cloud-init create new host keys: forget the old ones, so the next
    # SSH use reads the new keys from the console, exactly as after `up`.
    remove_host(f"dlenv-{name}", warn=terminal.warn)
    ssh_config.write_entry(name, env_target(name, new, settings))
    try:
        if old is not None:
            with terminal.phase(f"removing the old instance {old.instance_id} ({old.az})"):
                cloud_move.terminate(
                    aws, [old.instance_id], cloud_move.spot_requests_of(aws, [old.instance_id])
                )
        made = cloud_move.artifacts(aws, name, move_id) if move_id else cloud_move.MoveArtifacts()
        with terminal.phase("removing the move's image and snapshot"):
            cloud_move.remove_image_and_snapshots(aws, made.images, made.snapshots)
        cloud_move.untag(aws, new.instance_id)
    except BaseException:
        terminal.info(
            f"{name} runs in {new.az} ({new.instance_id}); the clean-up of the old zone did not "
            f"finish: `dlenv start {name} --move` finishes it"
        )
        raise


def _clear_leftovers(aws: Aws, name: str, terminal: Terminal) -> None:
    """An earlier move that failed before its instance ran may have left a snapshot or image
    (a rollback cut short by a second Ctrl-C): remove them before starting again."""
    from dlenv.cloud import move as cloud_move

    old = cloud_move.artifacts(aws, name)
    if not old.items():
        return
    with terminal.phase(
        f"removing what an earlier, unfinished move left: {', '.join(old.items())}"
    ):
        cloud_move.terminate(aws, old.instances, cloud_move.spot_requests_of(aws, old.instances))
        cloud_move.remove_image_and_snapshots(aws, old.images, old.snapshots)


def _rollback(
    aws: Aws, name: str, move_id: str, terminal: Terminal, *, settle: bool
) -> tuple[list[str], list[str]]:
    """Remove what move `move_id` made; (what was removed, what is still there).

    After an interrupt a create call may have been carried out although its answer never
    arrived: AWS is asked again for up to SETTLE_SECONDS when one may have been in flight."""
    from dlenv.cloud import move as cloud_move

    undone: list[str] = []
    deadline = time.monotonic() + (SETTLE_SECONDS if settle else 0.0)
    try:
        while True:
            made = cloud_move.artifacts(aws, name, move_id)
            if made.items():
                cloud_move.terminate(
                    aws, made.instances, cloud_move.spot_requests_of(aws, made.instances)
                )
                cloud_move.remove_image_and_snapshots(aws, made.images, made.snapshots)
                undone.extend(made.items())
            if time.monotonic() >= deadline:
                break
            time.sleep(2.0)
        return undone, cloud_move.artifacts(aws, name, move_id).items()
    except KeyboardInterrupt:
        terminal.warn("rollback interrupted")
        return undone, [
            f"possibly a snapshot, image or instance tagged {cloud_move.TAG_MOVE}={move_id}"
        ]
    except DlenvError as exc:
        terminal.warn(f"rollback failed: {exc.message}")
        return undone, [f"what is tagged {cloud_move.TAG_MOVE}={move_id}"]
