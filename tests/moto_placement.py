"""Placement groups for moto, which has none (CreatePlacementGroup is "not implemented").

The tests run moto's server in the test process, so its EC2 responder can be given the three
calls dlenv makes, answering with AWS's shapes and error codes: CreatePlacementGroup (with
tags; a duplicate name is InvalidPlacementGroup.Duplicate), DescribePlacementGroups (GroupNames
or all; an unknown name is InvalidPlacementGroup.Unknown) and DeletePlacementGroup. moto also
ignores Placement and InterfaceType in RunInstances: the tests read what was requested from the
request itself (tests/harness/aws_proxy.py), not from moto's instances.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest

GROUPS: dict[str, dict[str, Any]] = {}
"""GroupName -> the PlacementGroup AWS would describe (shared by every region and account)."""
_LOCK = threading.Lock()
_IDS = itertools.count(1)


def _error(code: str, message: str) -> Exception:
    from moto.ec2.exceptions import EC2ClientError

    return EC2ClientError(code, message)


def _create(self: Any) -> Any:
    from moto.core.responses import ActionResult

    name = self._get_param("GroupName")
    strategy = self._get_param("Strategy")
    tags = self._parse_tag_specification("placement-group").get("placement-group", {})
    with _LOCK:
        if name in GROUPS:
            raise _error(
                "InvalidPlacementGroup.Duplicate", f"The Placement Group '{name}' already exists."
            )
        group = {
            "GroupName": name,
            "GroupId": f"pg-{next(_IDS):017x}",
            "Strategy": strategy,
            "State": "available",
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }
        GROUPS[name] = group
    return ActionResult({"PlacementGroup": group})


def _describe(self: Any) -> Any:
    from moto.core.responses import ActionResult

    names = self._get_param("GroupNames", [])
    with _LOCK:
        missing = [n for n in names if n not in GROUPS]
        if missing:
            raise _error(
                "InvalidPlacementGroup.Unknown",
                f"The Placement Group '{missing[0]}' is unknown.",
            )
        found = [GROUPS[n] for n in names] if names else list(GROUPS.values())
    return ActionResult({"PlacementGroups": found})


def _delete(self: Any) -> Any:
    from moto.core.responses import ActionResult

    name = self._get_param("GroupName")
    with _LOCK:
        if GROUPS.pop(name, None) is None:
            raise _error(
                "InvalidPlacementGroup.Unknown", f"The Placement Group '{name}' is unknown."
            )
    return ActionResult({})


@pytest.fixture
def placement_groups(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """Give moto's EC2 the placement-group calls for one test; yields the live groups."""
    from moto.ec2.responses import EC2Response

    monkeypatch.setattr(EC2Response, "create_placement_group", _create, raising=False)
    monkeypatch.setattr(EC2Response, "describe_placement_groups", _describe, raising=False)
    monkeypatch.setattr(EC2Response, "delete_placement_group", _delete, raising=False)
    GROUPS.clear()
    yield GROUPS
    GROUPS.clear()


def install() -> None:
    """The same for a whole process (benchmarks/cluster_bench.py), without undoing it."""
    from moto.ec2.responses import EC2Response

    EC2Response.create_placement_group = _create  # type: ignore[attr-defined]
    EC2Response.describe_placement_groups = _describe  # type: ignore[attr-defined]
    EC2Response.delete_placement_group = _delete  # type: ignore[attr-defined]
