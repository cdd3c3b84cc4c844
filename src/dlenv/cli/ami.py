"""`dlenv ami bake | list | rm | script`: images with the stack baked in, for faster `up`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, json_option, setting_option, yes_option
from dlenv.cli.provision import STACK_FLAGS, build_options, stack_options

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.group()
def ami() -> None:
    """Bake the dlenv stack into an AMI so `dlenv up` only runs the per-instance steps.

    \b
    dlenv ami bake [--instance g4dn.xlarge] [--spot]   builder -> provision -> clean -> image
    dlenv ami list                                     baked images, newest first
    dlenv ami rm AMI_ID                                deregister + delete its snapshots
    dlenv up mybox                                     uses the newest matching baked image
    """


@ami.command()
@setting_option(
    "--instance",
    "-t",
    setting="instance",
    help="Builder instance type (a GPU type, so the driver is installed and verified).",
    metavar="TYPE",
)
@setting_option(
    "--ami",
    setting="ami",
    help="Base image: ubuntu-24.04 (default), ubuntu-22.04, ...",
    metavar="AMI",
)
@setting_option("--disk", setting="disk", type=int, help="Image root volume GB.", metavar="GB")
@click.option("--spot/--on-demand", "spot", default=None, help="Build on a spot instance.")
@click.option(
    "--name",
    "builder",
    default=None,
    metavar="NAME",
    help="Builder name (default: bake- + 6 random hex digits).",
)
@stack_options
@yes_option
@json_option
@aws_options
@click.pass_obj
def bake(app: App, /, builder: str | None, yes: bool, as_json: bool, **flags: Any) -> None:
    """Build an image: launch a builder, provision it, clean it, image it, remove the builder.

    The builder and its security group and key pair are removed whether the bake succeeds or
    fails; an unfinished image is deregistered.
    """
    from dlenv.ops.bake import bake as run_bake

    stack_flags = {k: flags.pop(k) for k in STACK_FLAGS}
    settings = app.settings(**flags)
    options = build_options(settings, **stack_flags)
    result = run_bake(settings, app.terminal, options, yes=yes, name=builder)
    image = result.image
    if as_json:
        app.terminal.json(
            {
                "image_id": image.image_id,
                "name": image.name,
                "stack": image.stack,
                "seconds": result.seconds,
                "phases": result.phases,
                "applied": result.applied,
                "tags": image.tags,
            }
        )
        return
    phases = ", ".join(f"{k} {v:.0f}s" for k, v in result.phases.items())
    app.terminal.success(
        f"baked {image.image_id} ({image.name}) in {result.seconds:.0f}s: {phases}"
    )
    app.terminal.info(f"`dlenv up NAME --ami {image.base}` now launches from it")


@ami.command("list")
@json_option
@aws_options
@click.pass_obj
def list_images(app: App, /, as_json: bool, **aws_flags: Any) -> None:
    """Baked images in the region: stack (current or old), base, Python, size, storage $/month."""
    from dlenv.cloud import images
    from dlenv.cloud.session import from_settings
    from dlenv.ops.lifecycle import stack_fingerprint

    settings = app.settings(**aws_flags)
    aws = from_settings(settings)
    baked = images.list_baked(aws)
    current = stack_fingerprint()
    rows: list[dict[str, Any]] = [
        {
            "image_id": b.image_id,
            "name": b.name,
            "state": b.state,
            "created": b.created,
            "stack": b.stack,
            "stack_current": b.stack == current,
            "base": b.base,
            "os": b.os,
            "python": b.python,
            "arch": b.arch,
            "size_gb": b.size_gb,
            "monthly_cost": round(b.monthly_cost, 2),
            "snapshots": b.snapshot_ids,
        }
        for b in baked
    ]
    if as_json:
        app.terminal.json({"region": aws.region_name, "images": rows})
        return
    if not rows:
        app.terminal.info(f"no baked images in {aws.region_name} (make one: dlenv ami bake)")
        return
    app.terminal.table(
        ["IMAGE", "CREATED", "STATE", "STACK", "BASE", "PYTHON", "GB", "$/MONTH (max)"],
        [
            [
                r["image_id"],
                r["created"][:16].replace("T", " "),
                r["state"],
                r["stack"] + ("" if r["stack_current"] else " (old)"),
                r["base"],
                r["python"],
                str(r["size_gb"]),
                f"{r['monthly_cost']:.2f}",
            ]
            for r in rows
        ],
        title=f"dlenv images in {aws.region_name}",
    )
    old = [r["image_id"] for r in rows if not r["stack_current"]]
    if old:
        app.terminal.info(
            f"{len(old)} image(s) of an old stack are never used by `up`: dlenv ami rm {old[0]}"
        )


@ami.command("rm")
@click.argument("image_ids", nargs=-1, required=True, metavar="AMI_ID...")
@yes_option
@aws_options
@click.pass_obj
def rm(app: App, /, image_ids: tuple[str, ...], yes: bool, **aws_flags: Any) -> None:
    """Deregister baked images and delete their snapshots (only images dlenv baked)."""
    from dlenv.cloud import images
    from dlenv.cloud.session import from_settings
    from dlenv.errors import DlenvError

    settings = app.settings(**aws_flags)
    aws = from_settings(settings)
    found = [images.get(aws, i) for i in image_ids]  # every id checked before removing any
    names = ", ".join(f"{b.image_id} ({b.name})" for b in found)
    if not app.terminal.confirm(f"Remove {names} and their snapshots?", assume_yes=yes):
        raise DlenvError("nothing removed", "pass --yes to remove without asking")
    for image in found:
        snaps = images.remove(aws, image)
        app.terminal.success(
            f"removed {image.image_id}" + (f" and snapshot(s) {', '.join(snaps)}" if snaps else "")
        )


@ami.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write provision.sh and cleanup.sh into.",
)
@click.option(
    "--user",
    default=None,
    metavar="USER",
    help="Login user who owns the env and runs Jupyter (default: the --ami base's, e.g. ubuntu).",
)
@setting_option(
    "--ami", setting="ami", help="Base image the scripts are for (sets the default --user).",
    metavar="AMI",
)  # fmt: skip
@stack_options
@click.pass_obj
def script(app: App, /, out: Path, user: str | None, **flags: Any) -> None:
    """Write the bake's scripts (what Packer runs): provision.sh, then cleanup.sh (validated).

    \b
    Both run as root on the builder: the same steps `dlenv provision` runs, rendered for a
    machine dlenv does not drive itself (GPU steps detect the GPU at run time).
    """
    from dlenv.cloud.ami import DISTROS
    from dlenv.provision.image import render_cleanup_script
    from dlenv.provision.manifest import load_stack
    from dlenv.provision.render import render_script, write_uploads

    stack_flags = {k: flags.pop(k) for k in STACK_FLAGS}
    settings = app.settings(**flags)
    base = DISTROS.get(settings.ami)
    user = user or (base.user if base else "ubuntu")
    options = build_options(settings, **stack_flags).with_(user=user)
    stack = load_stack()
    out.mkdir(parents=True, exist_ok=True)
    for file, text in (
        ("provision.sh", render_script(stack, options)),
        ("cleanup.sh", render_cleanup_script(stack, options)),
    ):
        path = out / file
        path.write_text(text)
        path.chmod(0o755)
    (out / "stack-fingerprint").write_text(stack.fingerprint + "\n")
    write_uploads(stack, options, out)  # uploads/: the --ca-bundle as a file (prepare.sh moves it)
    app.terminal.success(
        f"wrote {out}/provision.sh and {out}/cleanup.sh (stack {stack.fingerprint}, user {user})"
    )
