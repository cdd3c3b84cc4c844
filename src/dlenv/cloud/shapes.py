"""Request shapes EC2 takes again and again: tag lists, tag specifications, filters.

Written once here so that every call builds them the same way and mypy checks them against
boto3-stubs' TypedDicts (`TagTypeDef`, `TagSpecificationTypeDef`, `FilterTypeDef`). The
TypedDicts are types only (boto3-stubs is a dev dependency): imported for the type checker,
never at run time, where these are plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_ec2.literals import ResourceTypeType
    from mypy_boto3_ec2.type_defs import FilterTypeDef, TagSpecificationTypeDef, TagTypeDef


def tag_list(tags: Mapping[str, str]) -> list[TagTypeDef]:
    """EC2's `Tags=[{"Key": ..., "Value": ...}]` from a mapping, in the mapping's order."""
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def tag_keys(keys: Iterable[str]) -> list[TagTypeDef]:
    """`Tags=[{"Key": ...}]` for delete_tags: the tags go whatever their value."""
    return [{"Key": key} for key in keys]


def tag_spec(resource: ResourceTypeType, tags: Mapping[str, str]) -> TagSpecificationTypeDef:
    """One `TagSpecifications` entry: the resource a create call makes gets TAGS at birth."""
    return {"ResourceType": resource, "Tags": tag_list(tags)}


def filter(name: str, *values: str) -> FilterTypeDef:
    """One `Filters` entry: NAME matching any of VALUES."""
    return {"Name": name, "Values": list(values)}
