"""Running the bundled smoke test (the `dlenv_smoke` package) here or on another machine.

`dlenv_smoke` is self-contained (torch + standard library), so running it anywhere means: make
the package importable for some Python, then run `python -m dlenv_smoke ARGS`. This module does
that in one place: `local_command` for this machine, `run_remote` for a provisioned host (where
the smoke-test step installed the `dlenv-smoke` command), and `package_files` + `REMOTE_DIR` for
what the cluster test uploads to nodes. Exit codes are the job's own: 0 passed on GPU, 10 passed
but no usable GPU (CPU only), 1 failed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from dlenv.errors import UsageError

if TYPE_CHECKING:
    from dlenv.ssh.target import SshTarget

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_CPU_ONLY = 10
REMOTE_DIR = ".cache/dlenv/smoke"
"""Where `package_files` go on a host, relative to the login user's home."""


def job_args(
    *,
    as_json: bool = False,
    quick: bool = True,
    device: str = "auto",
    expect_gpus: int | None = None,
) -> list[str]:
    """The `python -m dlenv_smoke` arguments for the CLI's options."""
    args = ["--quick" if quick else "--full", "--device", device]
    if expect_gpus is not None:
        args += ["--expect-gpus", str(int(expect_gpus))]
    if as_json:
        args.append("--json")
    return args


def package_dir() -> Path:
    """The directory that contains the `dlenv_smoke` package (put it on PYTHONPATH)."""
    import dlenv_smoke

    return Path(dlenv_smoke.__file__).resolve().parent.parent


def package_files() -> list[tuple[Path, str]]:
    """(local file, path relative to REMOTE_DIR) for every file the job needs on a host."""
    root = package_dir()
    return [
        (p, p.relative_to(root).as_posix()) for p in sorted((root / "dlenv_smoke").glob("*.py"))
    ]


def local_command(args: list[str], python: str | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) to run the job with `python` (default: this interpreter).

    The package directory is put first on PYTHONPATH, so another environment's interpreter
    (`--python /opt/conda/envs/x/bin/python`) runs this dlenv's job without dlenv installed.
    """
    import sys

    exe = python or sys.executable
    if python is not None:
        resolved = Path(python).expanduser()
        if not (resolved.is_file() and os.access(resolved, os.X_OK)):
            raise UsageError(
                f"--python {python}: no executable interpreter there",
                "point --python at a python binary, e.g. /opt/conda/bin/python",
            )
        exe = str(resolved)
    env = dict(os.environ)
    extra = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(package_dir()) + (os.pathsep + extra if extra else "")
    return [exe, "-m", "dlenv_smoke", *args], env


def run_local(args: list[str], python: str | None = None) -> int:
    """Run the job here, its report streaming to our stdout/stderr; returns its exit code."""
    argv, env = local_command(args, python)
    try:
        proc = subprocess.run(argv, env=env, check=False)
    except OSError as exc:
        raise UsageError(f"cannot run {argv[0]}: {exc}", "check --python") from exc
    return proc.returncode if proc.returncode >= 0 else EXIT_FAIL  # killed by a signal


def run_remote(target: SshTarget, args: list[str], name_hint: str) -> int:
    """Run the installed job (`dlenv-smoke`) on a host over ssh; its report streams here.

    Uses the same verified ssh options as the tunnel; returns the job's exit code.
    """
    from dlenv.errors import DlenvError
    from dlenv.ssh.command import join
    from dlenv.ssh.openssh import classify, ssh_line_argv

    remote = "command -v dlenv-smoke >/dev/null || exit 127; exec " + join(["dlenv-smoke", *args])
    proc = subprocess.run(
        ssh_line_argv(target, remote),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.stderr:
        import sys

        sys.stderr.write(proc.stderr)
    if proc.returncode == 255:
        raise classify(target, proc.stderr or "")
    if proc.returncode == 127:
        raise DlenvError(
            f"the smoke test is not installed on {target.label}",
            f"install it with `dlenv provision {name_hint} --only smoke-test`",
            host=target.label,
        )
    return proc.returncode
