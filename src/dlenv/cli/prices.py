"""`dlenv prices`: the GPU instance catalog with on-demand prices (`--refresh` from AWS)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from dlenv.cli.options import aws_options, json_option

if TYPE_CHECKING:
    from dlenv.cli._app import App


@click.command()
@click.option(
    "--refresh",
    is_flag=True,
    help="Fetch current prices from the AWS Pricing API into the local cache.",
)
@click.option(
    "--family",
    "families",
    multiple=True,
    metavar="FAMILY",
    help="Only these families (g4dn, g5, p5 ...).",
)
@json_option
@aws_options
@click.pass_obj
def prices(
    app: App, /, refresh: bool, families: tuple[str, ...], as_json: bool, **aws_flags: Any
) -> None:
    """List GPU instance types: GPU, memory, compute capability, vCPUs, $/h, vCPU quota codes."""
    from dlenv.cloud import catalog

    settings = app.settings(**aws_flags)
    region = settings.region
    if refresh:
        from dlenv.cloud import pricing
        from dlenv.cloud.session import from_settings

        aws = from_settings(settings)
        region = aws.region_name
        record = pricing.refresh(aws, region, catalog.names())
        app.terminal.success(
            f"cached {len(record['prices'])} prices for {region} ({record['fetched']})"
        )
    listed = [
        t for t in catalog.all_types(region) if not families or t.name.split(".")[0] in families
    ]
    types = [t for t in listed if catalog.unsupported_reason(t) is None]
    refused = [t for t in listed if catalog.unsupported_reason(t) is not None]
    if as_json:
        date, shipped_region = catalog.shipped_price_info()
        app.terminal.json(
            {
                "region": region,
                "shipped_prices": {"date": date, "region": shipped_region},
                "types": [t.as_dict() for t in types],
                "unsupported": [
                    {"type": t.name, "reason": catalog.unsupported_reason(t)} for t in refused
                ],
            }
        )
        return
    rows = [
        [
            t.name,
            t.gpu_summary,
            t.compute_capability,
            t.vcpus,
            f"{t.price_per_hour:.3f}",
            f"{t.quota(False).code} / {t.quota(True).code}",
        ]
        for t in types
    ]
    app.terminal.table(["TYPE", "GPU", "CC", "VCPU", "$/H", "QUOTA (ON-DEMAND / SPOT)"], rows)
    sources = sorted({t.price_source for t in types})
    app.terminal.note(
        f"prices: {'; '.join(sources)}. `dlenv prices --refresh --region R` updates them."
    )
    if refused:
        gpus = sorted({f"{t.gpu} sm_{t.compute_capability.replace('.', '')}" for t in refused})
        app.terminal.note(
            f"not listed: {', '.join(t.name for t in refused)} ({', '.join(gpus)}): CUDA 13 "
            "and the stack's torch wheels no longer support that GPU."
        )
