"""Lookup plugin: the wheels of a controller-side wheelhouse, with their sizes.

The roles upload only the wheels the host lacks (or holds at another size), in one comparison,
like `dlenv provision --wheelhouse` (wheel file names carry their versions).
"""

from __future__ import annotations

from pathlib import Path

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: dlenv_wheels
author: dlenv
short_description: List the *.whl files of a local directory with their sizes
options:
  _terms:
    description: The wheelhouse directory on the controller.
    required: true
"""

RETURN = r"""
_raw:
  description: One dict per wheel (name, path, size, key = 'name size'), sorted by name.
  type: list
  elements: dict
"""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if not terms or not terms[0]:
            return []
        root = Path(terms[0]).expanduser()
        if not root.is_dir():
            raise AnsibleError(f"dlenv_wheelhouse {root} is not a directory on the controller")
        return [
            {"name": p.name, "path": str(p.resolve()), "size": size, "key": f"{p.name} {size}"}
            for p, size in ((p, p.stat().st_size) for p in sorted(root.glob("*.whl")))
            if p.is_file()
        ]
