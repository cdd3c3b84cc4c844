"""Render the stack's steps as ONE plain bash script, for the Dockerfile and Packer.

API (what the image and AMI builders call)::

    from dlenv.provision.manifest import load_stack
    from dlenv.provision.options import ProvisionOptions
    from dlenv.provision.render import render_script

    stack = load_stack()                       # provision/stack.toml; stack.fingerprint = "1a2b3c..."
    opts = ProvisionOptions(python="uv", profile="container", cpu=True, user="jovyan",
                            wheelhouse=Path("wheels"))          # optional
    script = render_script(stack, opts)        # str: run it as root with bash

The script is `if ! check; then apply; fi` per step (each body in its own `bash -eo pipefail`
so errexit holds inside it), then records the step as done in /var/lib/dlenv/steps/<name>
with the fingerprint: `step_script` is the one wrapper the SSH runner sends too. Things it expects:
- it runs as root; `options.user` must already exist (it owns the env and, on VMs, runs Jupyter);
- with `options.wheelhouse` set, the wheels are at `<python.root>/wheelhouse` (/opt/dlenv/wheelhouse),
  i.e. the Dockerfile copies the directory there first;
- with `options.conda_installer` set, the installer is at /opt/dlenv/installers/<its file name>;
- with `options.ca_bundle` set, the checked bundle is at /opt/dlenv/uploads/dlenv-extra-ca.crt
  (`write_uploads(stack, opts, DIR)` writes DIR/uploads/; the Dockerfile and Packer copy that
  folder to <python.root>/uploads): file contents never travel inside the script;
- the smoke-test package is embedded in the script (base64 of a tarball dlenv builds itself).
Profile "container" leaves out the systemd-only steps (driver, CUDA toolkit, Jupyter service,
idle timer): the CUDA base image brings the toolkit and the container's command runs Jupyter:
`/opt/dlenv/env/bin/jupyter-lab` (uv) or `/opt/dlenv/conda/envs/dlenv/bin/jupyter-lab` (conda),
see `dlenv.provision.steps.env_prefix(stack, opts)`.
GPU-only steps of the "vm" profile detect the GPU at run time and print
"no NVIDIA GPU: skipping driver/CUDA" when there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

from dlenv.provision.manifest import Stack
from dlenv.provision.options import ProvisionOptions
from dlenv.provision.steps import (
    REBOOT_EXIT,
    REMOTE_UPLOADS_NAME,
    Step,
    build_steps,
    upload_files,
)

_HEREDOC = "DLENV_STEP_BODY"

RebootMode = Literal["exit", "note"]
"""What the step wrapper does when an apply asks for a reboot (`dlenv_reboot_required`).

"exit": stop with `REBOOT_EXIT` before recording, so the SSH runner reboots the host and runs the
same wrapper again (whose check then passes and records the step). "note": the single-script
channels (Dockerfile, Packer) cannot reboot mid-script: say so, mark /var/run/reboot-required
and record the step (its effect appears at the image's first boot).
"""


def body_arg(text: str) -> str:
    """`text` as ONE word for `bash -c`: a quoted heredoc, so nothing in it is expanded twice."""
    if _HEREDOC in text:  # pragma: no cover - a template would have to contain the delimiter
        raise ValueError("step body contains the heredoc delimiter")
    return f"\"$(cat <<'{_HEREDOC}'\n{text.rstrip()}\n{_HEREDOC}\n)\""


def record_script(steps: Sequence[Step]) -> str:
    """Record steps as done on the host (fingerprint, step digest, time), as every channel does.

    The SSH runner also uses it for steps whose check already passes at plan time but that carry
    no record: a run cut off after a step's apply finished on the host but before it wrote its
    record (the connection dropped) leaves exactly that, and the rerun must not leave the step
    unrecorded.
    """
    lines = ["mkdir -p /var/lib/dlenv/steps"]
    lines += [
        f'echo "$DLENV_FINGERPRINT {step.digest} $(date -u +%Y-%m-%dT%H:%M:%SZ)" '
        f"> /var/lib/dlenv/steps/{step.name}"
        for step in steps
    ]
    return "\n".join(lines) + "\n"


def step_script(step: Step, *, reboot: RebootMode) -> str:
    """THE step wrapper, for every channel: check; else apply, verify, record.

    Exits 0 when the step is done (already, or now), non-zero when it failed (the log line
    carries the apply's own exit code; "exit" mode exits 1), and `REBOOT_EXIT` only in "exit"
    mode when the apply asked for a reboot: only this wrapper ever exits with that code (the
    apply asks through a marker file), so a tool's own exit code (apt-get's 100) can never be
    mistaken for a reboot request. Check and apply read /dev/null, so neither can eat the rest
    of a script fed on stdin.
    """
    return "\n".join(_wrapper_lines(step, reboot)) + "\n"


def _wrapper_lines(step: Step, reboot: RebootMode) -> list[str]:
    """The wrapper's lines; a body's heredoc is inside one item, so callers may indent items."""
    check = f"bash -eo pipefail -c {body_arg(step.check)} </dev/null >/dev/null 2>&1"
    # "exit": a failed apply exits 1, so that REBOOT_EXIT always means a reboot request. "note":
    # the apply's own code, which an image build reports ("provision step X: exit code 100").
    failed = "1" if reboot == "exit" else "$rc"
    if reboot == "exit":
        on_reboot = [f"    exit {REBOOT_EXIT}"]
    else:
        on_reboot = [
            f'    dlenv_log "{step.name}: done; a reboot is needed before it takes effect"',
            "    touch /var/run/reboot-required",
        ]
    lines = [
        "rm -f /run/dlenv/reboot-required",
        f"if {check}; then",
        f'  dlenv_log "{step.name}: already done"',
        "else",
        f'  dlenv_log "{step.name}: applying"',
        "  rc=0",
        f"  bash -eo pipefail -c {body_arg(step.apply)} </dev/null || rc=$?",
        "  if [ $rc -ne 0 ]; then",
        f'    dlenv_log "{step.name}: FAILED (exit $rc)"; exit {failed}',
        "  elif [ -e /run/dlenv/reboot-required ]; then",
        *on_reboot,
        f"  elif ! {check}; then",
        f'    dlenv_log "{step.name}: FAILED: applied, but its check still fails"; exit 1',
        "  fi",
        "fi",
        *record_script([step]).rstrip("\n").splitlines(),
    ]
    return lines


def render_step(step: Step) -> str:
    """One step of the single script: the wrapper, inside a GPU guard for GPU-only steps."""
    run = _wrapper_lines(step, reboot="note")
    lines = [f"# ---- step: {step.name} ({step.summary})"]
    if step.gpu_only:
        lines += [
            "if dlenv_has_nvidia_gpu; then",
            *("  " + ln for ln in run),
            "else",
            '  dlenv_log "no NVIDIA GPU: skipping driver/CUDA"',
            "fi",
        ]
    else:
        lines += run
    return "\n".join(lines) + "\n"


def render_script(stack: Stack, options: ProvisionOptions) -> str:
    """The whole provisioning as one bash script (see the module docstring)."""
    stepset = build_steps(stack, options, facts=None)
    parts = [
        "#!/usr/bin/env bash",
        f"# dlenv provisioning script: stack {stack.fingerprint}, profile {options.profile}, "
        f"python {options.python}. Generated by dlenv.provision.render: do not edit.",
        "set -euo pipefail",
        "if [ \"$(id -u)\" != 0 ]; then echo 'run this script as root' >&2; exit 1; fi",
        stepset.prelude,
        _os_guard(stack),
    ]
    for step in stepset.steps:
        if step.skip_reason is not None:
            if step.gpu_only:
                parts.append(
                    f'dlenv_log "{step.name}: skipped ({step.skip_reason}): '
                    f'no NVIDIA GPU: skipping driver/CUDA"\n'
                )
            else:
                parts.append(f'dlenv_log "{step.name}: skipped ({step.skip_reason})"\n')
            continue
        parts.append(render_step(step))
    parts.append('dlenv_log "stack $DLENV_FINGERPRINT provisioned"\n')
    return "\n".join(parts)


def write_uploads(stack: Stack, options: ProvisionOptions, into: Path) -> list[str]:
    """Write `into/uploads/<name>` for each file the rendered steps read; returns the names.

    The single-script channels (Dockerfile, Packer) copy `uploads/` to `<python.root>/uploads`
    before running the script, as they bring in `wheelhouse/` and `installers/`. Nothing is
    written when the steps need no file.
    """
    folder = into / REMOTE_UPLOADS_NAME
    names = []
    for remote, text in upload_files(stack, options).items():
        folder.mkdir(parents=True, exist_ok=True)
        name = PurePosixPath(remote).name
        (folder / name).write_text(text)
        (folder / name).chmod(0o644)
        names.append(name)
    return names


def _os_guard(stack: Stack) -> str:
    supported = " ".join(stack.supported_os)
    return (
        ". /etc/os-release\n"
        f'case " {supported} " in\n'
        '  *" $ID-$VERSION_ID "*) ;;\n'
        f'  *) echo "unsupported OS $ID-$VERSION_ID: dlenv supports {supported}" >&2; exit 1 ;;\n'
        "esac\n"
    )
