"""Lookup plugin: dlenv's stack manifest (provision/stack.toml), read with Python's tomllib.

The roles take every pinned version, installer URL and sha256 from here, so the manifest stays
the one place where the stack is defined (the SSH runner, the Dockerfile and Packer read it too).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: dlenv_stack
author: dlenv
short_description: Read dlenv's stack manifest (provision/stack.toml)
description:
  - Parses the TOML manifest with Python's tomllib (tomli on Python 3.10) on the controller.
  - Returns a dict with C(stack) (the manifest's tables), C(fingerprint) (the stack fingerprint,
    exactly as C(dlenv.provision.manifest) computes it), C(path) and C(files_dir) (the shipped
    C(provision/files) directory, whose templates the roles share with dlenv's steps).
options:
  _terms:
    description:
      - Path of the manifest. Empty or omitted means C(provision/stack.toml) of the checkout this
        plugin ships in (four directories above this file), else the C(dlenv) package's copy.
    required: false
"""

EXAMPLES = r"""
- name: Load the manifest
  ansible.builtin.set_fact:
    stack: "{{ lookup('dlenv_stack') }}"
"""

RETURN = r"""
_raw:
  description: One dict with keys stack, fingerprint and path.
  type: list
  elements: dict
"""

FINGERPRINT_LEN = 12


def default_manifest() -> Path:
    """provision/stack.toml beside ansible/ (a checkout), else the installed dlenv's copy."""
    here = Path(__file__).resolve()
    candidate = here.parents[4] / "provision" / "stack.toml"
    if candidate.is_file():
        return candidate
    try:
        from dlenv.provision.manifest import provision_dir
    except ImportError:
        return candidate
    return provision_dir() / "stack.toml"


def fingerprint(data: dict) -> str:
    """Same canonical hash as dlenv.provision.manifest.canonical_fingerprint."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:FINGERPRINT_LEN]


def load(path: str | Path | None = None) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise AnsibleError(
                "reading provision/stack.toml needs Python 3.11+ on the controller "
                "(or the tomli package)"
            ) from None
    manifest = Path(path).expanduser() if path else default_manifest()
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AnsibleError(f"cannot read the dlenv stack manifest {manifest}: {exc}") from None
    return {
        "stack": data,
        "fingerprint": fingerprint(data),
        "path": str(manifest),
        # provision/files/: the templates shared with the steps (always the shipped ones, also
        # when a custom manifest is read).
        "files_dir": str(default_manifest().parent / "files"),
    }


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        paths = [t for t in terms if t] or [None]
        return [load(p) for p in paths]
