from __future__ import annotations

import json

import pytest

from dlenv.cloud import catalog
from dlenv.errors import UsageError


def test_required_families_are_in_the_catalog():
    families = {n.split(".")[0] for n in catalog.names()}
    assert {"g4dn", "g5", "g6", "g6e", "p3", "p4d", "p4de", "p5", "p5en"} <= families


def test_lookup_reports_gpu_facts():
    t = catalog.lookup("g4dn.xlarge")
    assert (t.gpu, t.gpu_count, t.gpu_memory_gib, t.compute_capability, t.vcpus) == (
        "T4",
        1,
        16,
        "7.5",
        4,
    )
    assert t.price_per_hour > 0 and "us-east-1" in t.price_source
    assert catalog.lookup("p5.48xlarge").gpu_summary == "8x H100 80 GB"
    assert catalog.lookup("g5g.xlarge").arch == "arm64"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("g4dn.xlarg", "g4dn.xlarge"), ("g5.xlrage", "g5.xlarge"), ("p4d.24xl", "p4d.24xlarge")],
)
def test_misspelled_type_suggests_closest(name, suggestion):
    with pytest.raises(UsageError) as err:
        catalog.lookup(name)
    assert suggestion in err.value.hint
    assert err.value.exit_code == 2


def test_quota_codes_by_family():
    g, p = catalog.lookup("g6.xlarge"), catalog.lookup("p4d.24xlarge")
    assert (g.quota(False).code, g.quota(True).code) == ("L-DB2E81BA", "L-3819A6DF")
    assert (p.quota(False).code, p.quota(True).code) == ("L-417A185B", "L-7212CCBC")


@pytest.mark.parametrize("name", ["p3.2xlarge", "p3.8xlarge", "p3.16xlarge", "p3dn.24xlarge"])
def test_volta_types_are_refused_for_launch(name):
    """CUDA 13 and the cu130 torch wheels dropped Volta (sm_70) and the open kernel modules
    need Turing's GSP: every p3 type is refused, in one line saying why and what to pick."""
    with pytest.raises(UsageError) as err:
        catalog.launchable(name)
    assert err.value.exit_code == 2
    assert f"{name} is not supported" in err.value.message and "sm_70" in err.value.message
    assert "CUDA 13" in err.value.message and "open kernel modules" in err.value.message
    assert "g4dn (T4, sm_75" in err.value.hint
    assert catalog.lookup(name).gpu.startswith("V100")  # still known: quotas and status read it


def test_every_other_type_is_launchable():
    """T4 (sm_75) is the oldest GPU the stack keeps; all non-Volta types launch."""
    for t in catalog.all_types():
        if t.name.startswith("p3"):
            continue
        assert catalog.unsupported_reason(t) is None, t.name
        assert catalog.launchable(t.name).name == t.name
    assert catalog.launchable("g4dn.xlarge").compute_capability == "7.5"


def test_prices_are_plausible_and_dated():
    date, region = catalog.shipped_price_info()
    assert date.startswith("20") and region == "us-east-1"
    for t in catalog.all_types():
        # $/GPU-hour between a T4G's and an H200's: catches a unit slip (cents, per-month)
        per_gpu = t.price_per_hour / t.gpu_count
        assert 0.2 < per_gpu < 12, (t.name, per_gpu)


def test_refreshed_cache_overrides_shipped_price(state):
    from dlenv.cloud import pricing

    item = json.dumps(
        {
            "product": {"attributes": {"instanceType": "g4dn.xlarge"}},
            "terms": {
                "OnDemand": {
                    "x": {"priceDimensions": {"y": {"pricePerUnit": {"USD": "0.5000000000"}}}}
                }
            },
        }
    )
    assert pricing.parse_price_item(item) == ("g4dn.xlarge", 0.5)
    pricing._cache_file("eu-west-1").write_text(
        json.dumps(
            {"region": "eu-west-1", "fetched": "2026-11-01", "prices": {"g4dn.xlarge": 0.587}}
        )
    )
    t = catalog.lookup("g4dn.xlarge", "eu-west-1")
    assert t.price_per_hour == 0.587 and "2026-11-01" in t.price_source
    assert catalog.lookup("g4dn.xlarge", "us-west-2").price_per_hour != 0.587
