"""Run once while the image is built (as root): make `pip install` in a notebook persist, safely.

- `dlenv-user-site.pth` (importing `dlenv_user_site`) in the env's site-packages turns the user
  site on (`site.ENABLE_USER_SITE` is False in a venv) and adds
  `$PYTHONUSERBASE/lib/pythonX.Y/site-packages` *after* the env's own packages: what a user installs there is found, but never shadows the stack's torch or numpy.
  `dlenv local up` mounts a named volume (dlenv-packages) on ~/.local, and the image sets
  PIP_PREFIX to it, so `%pip install X` lands there and survives `dlenv local down`/`up` and a
  rebuilt image. `python -s` / PYTHONNOUSERSITE still turn it off.
- /opt/dlenv/constraints.txt (PIP_CONSTRAINT) holds the installed version of every package the
  stack pins (provision/stack.toml [packages] and [scientific.packages]): `pip install X` that
  would replace one of them fails with pip's conflict message instead of pulling another torch.
"""

from __future__ import annotations

import importlib.metadata
import sysconfig
from pathlib import Path

import tomllib

# Run at every start: the .pth is read twice (site.venv() reads it, then turns the user site off;
# site.main() reads it again), so the second call is the one that sticks.
PTH = "import dlenv_user_site; dlenv_user_site.enable()\n"
MODULE = '''"""dlenv: the user site (~/.local, a volume of `dlenv local up`) after the env's packages.

Written into the image by docker/user_site.py. The folder is made when missing: a path that does
not exist at start-up is cached as absent by the import system, so a package that `%pip install`
puts there would not be importable until the kernel restarts.
"""
import os
import site
import sys


def enable() -> None:
    if sys.flags.no_user_site:
        return
    site.ENABLE_USER_SITE = True
    path = site.getusersitepackages()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:  # a read-only or foreign home: the folder is simply not there
        pass
    if path not in sys.path:
        site.addsitedir(path)
'''


def main() -> None:
    site_packages = Path(sysconfig.get_paths()["purelib"])
    (site_packages / "dlenv_user_site.py").write_text(MODULE)
    (site_packages / "dlenv-user-site.pth").write_text(PTH)
    stack = tomllib.loads(Path("/opt/dlenv/stack.toml").read_text())
    names = list(stack.get("packages", {}))
    names += list(stack.get("scientific", {}).get("packages", {}))
    lines = ["# the stack's pins, as installed: `pip install` in a notebook cannot replace them\n"]
    for name in dict.fromkeys(names):
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}\n")
        except importlib.metadata.PackageNotFoundError:
            continue
    Path("/opt/dlenv/constraints.txt").write_text("".join(lines))
    print(f"[dlenv] user site after {site_packages}; {len(lines) - 1} pin(s) held", flush=True)


if __name__ == "__main__":
    main()
