"""Lookup plugin: the smoke-test package (dlenv_smoke) as the SSH runner ships it.

A reproducible tar.gz (sorted members, mode 0644, zero mtimes, no bytecode) as base64, plus the
first 16 hex digits of its sha256. The host records that digest in dlenv_smoke/.dlenv-digest, and
`dlenv provision`'s check compares it, so both channels must build the archive identically
(tests/ansible checks that they do).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: dlenv_smoke
author: dlenv
short_description: The dlenv_smoke package as a reproducible tar.gz (base64) and its digest
description:
  - Packs the C(dlenv_smoke) package directory exactly like C(dlenv.provision.steps).
options:
  _terms:
    description:
      - The package directory. Omitted means C(src/dlenv_smoke) of the checkout this plugin ships
        in, else the installed C(dlenv_smoke) package.
    required: false
"""

RETURN = r"""
_raw:
  description: One dict with keys b64 (the archive, base64) and digest.
  type: list
  elements: dict
"""


def default_package_dir() -> Path:
    candidate = Path(__file__).resolve().parents[4] / "src" / "dlenv_smoke"
    if candidate.is_dir():
        return candidate
    import importlib.util

    spec = importlib.util.find_spec("dlenv_smoke")
    if spec is None or not spec.submodule_search_locations:
        raise AnsibleError(
            "the dlenv_smoke package was not found (neither src/dlenv_smoke nor installed)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def payload(src: Path) -> dict:
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        files = sorted(
            p
            for p in src.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
        )
        for path in files:
            info = tarfile.TarInfo(f"dlenv_smoke/{path.relative_to(src).as_posix()}")
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return {
        "b64": base64.encodebytes(raw).decode().strip(),
        "digest": hashlib.sha256(raw).hexdigest()[:16],
    }


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        src = Path(terms[0]).expanduser() if terms and terms[0] else default_package_dir()
        if not src.is_dir():
            raise AnsibleError(f"dlenv_smoke package directory {src} does not exist")
        return [payload(src)]
