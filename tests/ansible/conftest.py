"""The Ansible tests' folder setup (their fixtures are the suite's: tests/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

# The helpers module sits beside this file (tests/ is on sys.path, but tests/ansible/ is not a
# package: its name would shadow the real `ansible`).
sys.path.insert(0, str(Path(__file__).parent))


# isolated_state (DLENV_STATE_DIR for the dlenv runs beside the playbook) and wheelhouse:
# tests/conftest.py
