"""Seed dlenv's starter notebooks into the Lab's work directory: `<work>/examples/`, once.

Run as the notebook user right before JupyterLab starts, on every channel (the SSH host's
service runs it as `ExecStartPre`, the Docker image's start runs it before `jupyter lab`),
through `<python.root>/bin/dlenv-seed-examples`, which the smoke-test step installs.

The rules protect the user's files:
- the examples are copied only when `<work>/examples` does not exist at all, so an edited
  notebook is never overwritten and a deleted one is not brought back; removing the whole
  folder asks for a fresh copy at the next start;
- the copy is made in a temporary folder and renamed into place, so an interrupted copy never
  leaves a half folder that would block the next try;
- the sync marker `~/.local/state/dlenv/synced-down` (what `dlenv down` compares the work
  directory against) is created when absent, and the copied notebooks are dated no later than
  it, so dlenv's own examples never count as the user's unsaved changes.

Only the standard library: it runs in the stack's environment where dlenv itself is absent, and
a failure here must never keep the Lab from starting (it says why on stderr and exits 0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

NOTEBOOKS_DIR = Path(__file__).resolve().parent / "notebooks"
EXAMPLES_NAME = "examples"
SYNC_MARKER = Path(".local") / "state" / "dlenv" / "synced-down"
"""Relative to the user's home (outside the work directory, so it is never synced itself)."""


NO_SEED_ENV = "DLENV_SEED_EXAMPLES"
"""Set to 0 where the work directory is the user's own folder (`dlenv local up --workdir`)."""


def default_work_dir() -> Path:
    """$DLENV_WORK_DIR (the Docker image sets it; the wrapper script too), else ~/work."""
    value = os.environ.get("DLENV_WORK_DIR")
    return Path(value) if value else Path.home() / "work"


def seed(work_dir: Path, home: Path, source: Path = NOTEBOOKS_DIR) -> list[str]:
    """Copy the starter notebooks into `work_dir/examples` if that does not exist; touch the
    sync marker if absent. Returns the names copied (empty when the folder was already there)."""
    dest = work_dir / EXAMPLES_NAME
    copied: list[str] = []
    if not os.path.lexists(dest):
        names = sorted(p.name for p in source.glob("*.ipynb"))
        work_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".examples-", dir=work_dir))
        try:
            for name in names:
                shutil.copyfile(source / name, tmp / name)
            tmp.chmod(0o755)
            os.rename(tmp, dest)  # fails (and changes nothing) if dest appeared meanwhile
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        copied = names
    marker = home / SYNC_MARKER
    if marker.exists():
        # the examples are dlenv's, not the user's work: never newer than the last sync down
        stamp = marker.stat().st_mtime
        for name in copied:
            os.utime(dest / name, (stamp, stamp))
    else:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dlenv-seed-examples",
        description="Copy dlenv's starter notebooks into WORK_DIR/examples unless it exists.",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="default: $DLENV_WORK_DIR, else ~/work"
    )
    args = parser.parse_args(argv)
    work_dir = args.work_dir or default_work_dir()
    if os.environ.get(NO_SEED_ENV) == "0" and args.work_dir is None:
        # `dlenv local up --workdir DIR`: DIR is the user's own project; nothing is added to it
        # (running `dlenv-seed-examples --work-dir DIR` by hand still copies them).
        return 0
    try:
        copied = seed(work_dir, Path.home())
    except OSError as exc:
        print(f"dlenv-seed-examples: starter notebooks not copied: {exc}", file=sys.stderr)
        return 0
    if copied:
        print(f"dlenv-seed-examples: {len(copied)} starter notebooks in {work_dir / EXAMPLES_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
