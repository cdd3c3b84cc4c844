"""The Pricing API path (moto does not implement Pricing: botocore's Stubber answers)."""

from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber

from dlenv.cloud import catalog, pricing
from dlenv.errors import AwsError


def _item(itype: str, usd: str) -> str:
    return json.dumps(
        {
            "product": {"attributes": {"instanceType": itype}},
            "terms": {
                "OnDemand": {"t": {"priceDimensions": {"d": {"pricePerUnit": {"USD": usd}}}}}
            },
        }
    )


def test_refresh_caches_prices_that_lookup_then_uses(aws):
    client = aws.client("pricing", region="us-east-1")
    with Stubber(client) as stub:
        stub.add_response(
            "get_products",
            {
                "PriceList": [
                    _item("g4dn.xlarge", "0.5260000000"),
                    _item("g5.xlarge", "0.9500000000"),
                    _item("m5.large", "0.096"),
                ],
                "NextToken": "n",
            },
        )
        stub.add_response("get_products", {"PriceList": [_item("p5.48xlarge", "55.0400000000")]})
        record = pricing.refresh(aws, "us-east-1", catalog.names())
    assert record["prices"] == {"g4dn.xlarge": 0.526, "g5.xlarge": 0.95, "p5.48xlarge": 55.04}
    assert catalog.lookup("g5.xlarge", "us-east-1").price_per_hour == 0.95


def test_refresh_translates_access_denied(aws):
    client = aws.client("pricing", region="us-east-1")
    with Stubber(client) as stub:
        stub.add_client_error("get_products", "AccessDeniedException", "not authorized", 400)
        with pytest.raises(AwsError) as err:
            pricing.refresh(aws, "us-east-1", catalog.names())
    assert "IAM" in err.value.hint
