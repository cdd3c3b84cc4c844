"""`dlenv ami bake`: builder instance -> provision -> clean + validate -> stop -> image.

The builder is an ordinary dlenv environment (named `bake-` + 6 random hex digits, tagged `dlenv:role`), so
`dlenv status` shows it while it exists and `dlenv down` could remove it by hand; the bake
removes it (instance, security group, key pair, ssh entry) on success and on every failure, and
deregisters a half-made image, so a failed bake leaves nothing that costs money.
"""

from __future__ import annotations

import copy
import datetime as dt
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dlenv.config import Settings
from dlenv.errors import DlenvError, NotFoundError
from dlenv.terminal import Terminal

if TYPE_CHECKING:
    from dlenv.cloud.session import Aws

ROLE_TAG = "dlenv:role"


@dataclass
class BakeResult:
    image: Any
    builder: str
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)


def builder_name() -> str:
    return f"bake-{secrets.token_hex(3)}"


def image_tags(
    *,
    stack: Any,
    settings: Settings,
    options: Any,
    env: Any,
    versions: dict[str, str],
    gpu: bool,
    when: dt.datetime,
) -> dict[str, str]:
    """What `dlenv up`, `dlenv ami list` and people in the console need to know of an image."""
    tags = {
        "Name": "",  # filled by the caller with the image name
        "dlenv:stack": stack.fingerprint,
        "dlenv:base": settings.ami,
        "dlenv:os": env.os or "?",
        "dlenv:python": options.python,
        "dlenv:user": env.user,
        "dlenv:source-ami": env.image_id or "?",
        "dlenv:created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dlenv:gpu": "yes" if gpu else "no",
        "dlenv:driver-branch": str(stack.get("nvidia.driver_branch")),
        "dlenv:cuda": str(stack.get("cuda.version")),
    }
    for package, version in versions.items():
        tags[f"dlenv:{package}"] = version
    if (
        getattr(options, "requirements", None)
        or getattr(options, "conda_env", None)
        or getattr(options, "packages", ())
    ):
        # the digest the user-packages step records: `up` from this image with the same files
        # finds that step done, with others installs only what differs
        from dlenv.provision.options import user_packages

        tags["dlenv:user-packages"] = user_packages(options).digest
    return tags


def bake(
    settings: Settings,
    terminal: Terminal,
    options: Any,
    *,
    yes: bool = False,
    name: str | None = None,
    poll: float = 15,
) -> BakeResult:
    """Bake one image; returns it once `available`. Raises after removing whatever it made."""
    from dlenv.cloud import catalog, images
    from dlenv.cloud.session import from_settings
    from dlenv.ops import lifecycle, power
    from dlenv.ops import up as up_ops
    from dlenv.provision import runner
    from dlenv.provision.manifest import load_stack

    name = lifecycle.validate_name(name or builder_name())
    settings = copy.deepcopy(settings)
    settings.baked = False  # a builder always starts from the stock base image
    itype = catalog.launchable(settings.instance, settings.region)
    stack = load_stack()
    question = (
        f"Bake a dlenv image (stack {stack.fingerprint}, {settings.ami}, python {options.python}) "
        f"on a temporary {itype.name} builder {name} "
        f"({'spot' if settings.spot else f'{itype.price_per_hour:.3f} $/h'}, usually 15-30 min)?"
    )
    if not terminal.confirm(question, assume_yes=yes):
        raise DlenvError("bake cancelled", "nothing was created")
    aws = from_settings(settings)
    started = time.monotonic()
    phases: dict[str, float] = {}
    image_id: str | None = None

    def lap(phase: str, since: float) -> float:
        now = time.monotonic()
        phases[phase] = round(now - since, 1)
        return now

    t = started
    try:
        up = up_ops.up(
            name,
            settings,
            terminal,
            yes=True,
            wait_ssh=True,
            extra_tags={ROLE_TAG: "ami-builder"},
        )
        t = lap("launch", t)
        result = runner.provision_environment(
            name, up.ssh_target, settings, terminal, options=options
        )
        t = lap("provision", t)
        with terminal.phase(f"cleaning {name} for imaging, then validating the cleanup"):
            checked = _clean(up.target, stack, options)
        terminal.info(f"cleanup validated: {checked}")
        t = lap("cleanup", t)
        env = power.stop(name, settings, terminal)
        t = lap("stop", t)
        when = dt.datetime.now(dt.timezone.utc)
        gpu = bool(result.facts and result.facts.has_nvidia_gpu)
        tags = image_tags(
            stack=stack,
            settings=settings,
            options=options,
            env=env,
            versions=result.versions,
            gpu=gpu,
            when=when,
        )
        image_name = images.image_name(stack.fingerprint, env.os or "linux", options.python, when)
        tags["Name"] = image_name
        image_id = images.create(aws, env.instance_id, image_name, tags)
        terminal.info(f"creating image {image_id} ({image_name})")
        with terminal.phase(f"waiting for {image_id} to become available"):
            image = images.wait_available(aws, image_id, terminal.info, poll=poll)
        images.tag_snapshots(aws, image)
        lap("image", t)
    except BaseException:
        if image_id is not None:
            _discard_image(aws, image_id, terminal)
        raise
    finally:
        _remove_builder(name, settings, terminal)
    return BakeResult(
        image=image,
        builder=name,
        seconds=round(time.monotonic() - started, 1),
        phases=phases,
        applied=list(result.applied),
    )


def _clean(target: Any, stack: Any, options: Any) -> str:
    from dlenv.provision.image import CHECKED, run_cleanup
    from dlenv.ssh.session import SshHost

    host = SshHost(target).connect()
    try:
        run_cleanup(host, stack, options.with_(user=options.user or target.user))
    finally:
        host.close()
    return CHECKED


def _discard_image(aws: Aws, image_id: str, terminal: Terminal) -> None:
    from dlenv.cloud import images

    try:
        image = images.get(aws, image_id)
        images.remove(aws, image)
        terminal.note(f"removed the unfinished image {image_id} and its snapshots")
    except NotFoundError:
        pass
    except Exception as exc:  # report; the original failure is what the user must see
        terminal.warn(f"could not remove image {image_id}: {exc}; `dlenv ami rm {image_id}`")


def _remove_builder(name: str, settings: Settings, terminal: Terminal) -> None:
    """Terminate the builder and delete its security group, key pair and ssh entry."""
    from dlenv.ops.down import down

    try:
        down(name, settings, terminal)
        terminal.note(f"builder {name} removed (instance, security group, key pair)")
    except NotFoundError:
        pass  # the launch failed before creating anything (its own rollback ran)
    except Exception as exc:
        terminal.warn(f"could not remove builder {name}: {exc}; run `dlenv down {name}`")
