"""On-demand prices from the AWS Pricing API, cached per region in dlenv's state dir.

The Pricing API lives only in a few regions (us-east-1 serves all); prices change (AWS cut
P4/P5 prices by up to 45% in 2025), so the shipped table is a dated fallback, not the truth.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlenv.cloud.session import Aws
from dlenv.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_pricing.type_defs import FilterTypeDef

REGION_NAMES = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "ca-central-1": "Canada (Central)",
    "eu-west-1": "EU (Ireland)",
    "eu-west-2": "EU (London)",
    "eu-west-3": "EU (Paris)",
    "eu-central-1": "EU (Frankfurt)",
    "eu-north-1": "EU (Stockholm)",
    "eu-south-1": "EU (Milan)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-northeast-2": "Asia Pacific (Seoul)",
    "ap-south-1": "Asia Pacific (Mumbai)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
    "sa-east-1": "South America (Sao Paulo)",
}


def _cache_file(region: str) -> Path:
    from dlenv.paths import cache_dir

    return cache_dir() / f"prices-{region}.json"


def load_cache(region: str) -> dict[str, Any] | None:
    path = _cache_file(region)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None  # anything else: no usable cache


def parse_price_item(item: str) -> tuple[str, float] | None:
    """(instance type, USD/hour) from one Pricing API PriceList JSON document."""
    doc = json.loads(item)
    attrs = doc.get("product", {}).get("attributes", {})
    itype = attrs.get("instanceType")
    for term in doc.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            usd = dim.get("pricePerUnit", {}).get("USD")
            if itype and usd not in (None, "") and float(usd) > 0:
                return itype, float(usd)
    return None


def fetch_prices(aws: Aws, region: str, types: list[str]) -> dict[str, float]:
    """Query the Pricing API (us-east-1 endpoint) for Linux on-demand shared-tenancy prices."""
    location = REGION_NAMES.get(region)
    if location is None:
        raise AwsError(
            f"dlenv does not know the Pricing API name of region {region}",
            "prices for this region come from the shipped table",
        )
    pricing = aws.client("pricing", region="us-east-1")
    filters: list[FilterTypeDef] = [
        {"Type": "TERM_MATCH", "Field": "location", "Value": location},
        {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
        {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
        {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
        {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
        {"Type": "TERM_MATCH", "Field": "instanceFamily", "Value": "GPU instance"},
    ]
    wanted = set(types)
    prices: dict[str, float] = {}
    paginator = pricing.get_paginator("get_products")
    for page in paginator.paginate(ServiceCode="AmazonEC2", Filters=filters):
        for item in page.get("PriceList", []):
            parsed = parse_price_item(item)
            if parsed and parsed[0] in wanted:
                prices[parsed[0]] = parsed[1]
    return prices


def refresh(aws: Aws, region: str, types: list[str]) -> dict[str, Any]:
    from dlenv.cloud.aws_errors import translated

    with translated(region=region):
        prices = fetch_prices(aws, region, types)
    if not prices:
        raise AwsError(
            f"the Pricing API returned no GPU prices for {region}",
            "check the region name; the shipped table stays in use",
        )
    record = {"region": region, "fetched": dt.date.today().isoformat(), "prices": prices}
    _cache_file(region).write_text(json.dumps(record, indent=1, sort_keys=True))
    return record
