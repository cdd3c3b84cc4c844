"""The manifest loads, validates, and its fingerprint follows the data (not the formatting)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dlenv.errors import ProvisionError
from dlenv.provision.manifest import load_stack, provision_dir


def test_shipped_manifest_pins_the_stack() -> None:
    stack = load_stack()
    assert re.fullmatch(r"[0-9a-f]{12}", stack.fingerprint)
    assert stack.supported_os == ["ubuntu-22.04", "ubuntu-24.04", "debian-12"]
    assert stack.get("nvidia.driver_branch") == "580"
    assert stack.get("nvidia.open_kernel_modules") is True
    v = stack.versions()
    assert v["torch"] and v["jupyterlab"] and v["ipykernel"] and v["cuda"]
    for dist in ("miniforge", "anaconda"):
        d = stack.conda_dist(dist)
        assert d["url"].startswith("https://") and d["version"] in d["url"]
        assert re.fullmatch(r"[0-9a-f]{64}", d["sha256"])
    assert stack.get("conda.default_dist") == "miniforge"


def test_fingerprint_ignores_comments_and_layout_but_not_pins(tmp_path: Path) -> None:
    original = (provision_dir() / "stack.toml").read_text()
    reformatted = tmp_path / "a.toml"
    reformatted.write_text(
        "# a new comment\n\n" + re.sub(r"(?m)^#.*\n", "", original).replace(" = ", "=")
    )
    assert load_stack(reformatted).fingerprint == load_stack().fingerprint
    bumped = tmp_path / "b.toml"
    bumped.write_text(original.replace('jupyterlab = "', 'jupyterlab = "9', 1))
    assert load_stack(bumped).fingerprint != load_stack().fingerprint


def test_bad_checksum_in_manifest_is_refused(tmp_path: Path) -> None:
    text = (provision_dir() / "stack.toml").read_text()
    sha = load_stack().conda_dist("miniforge")["sha256"]
    bad = tmp_path / "stack.toml"
    bad.write_text(text.replace(sha, "not-a-sha"))
    with pytest.raises(ProvisionError, match="sha256"):
        load_stack(bad)


def test_unknown_conda_dist_names_the_choices() -> None:
    with pytest.raises(ProvisionError, match="unknown conda distribution 'mamba'") as info:
        load_stack().conda_dist("mamba")
    assert info.value.hint == "choose one of: anaconda, miniforge"
