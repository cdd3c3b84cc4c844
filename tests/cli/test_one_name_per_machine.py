"""One name is one environment on this machine: `ssh dlenv-NAME`, the known_hosts alias
`dlenv-NAME` and the private key `keys/dlenv-NAME` name one host. The real CLI against moto's
server, two regions."""

from __future__ import annotations

from awsfake import dlenv_resources, seed_ubuntu

OTHER = "eu-west-1"


def _key_files(cli) -> list[str]:
    keys = cli.home.parent / "Application Support" / "dlenv" / "keys"
    return sorted(p.name for p in keys.iterdir()) if keys.is_dir() else []


def test_a_second_region_is_refused_while_the_first_exists(cli):
    seed_ubuntu(OTHER, endpoint_url=cli.endpoint)
    first = cli("up", "onename", "--no-provision", "--yes", "--region", OTHER)
    assert first.code == 0, first.err
    assert "dlenv-onename.region" in _key_files(cli)
    try:
        second = cli("up", "onename", "--no-provision", "--yes")  # us-east-1
        assert second.code == 2, second.err
        errors = [ln for ln in second.err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and f"onename already exists in {OTHER}" in errors[0]
        assert f"`dlenv down onename --region {OTHER}`" in second.err
        assert "Traceback" not in second.err
        left = dlenv_resources("us-east-1", "onename", cli.endpoint)
        assert left == {k: [] for k in left}, left  # nothing created in the second region
    finally:
        assert cli("down", "onename", "--yes", "--region", OTHER).code == 0
    assert _key_files(cli) == []
    # the first is gone: the record was stale-proofed with it, the name is free here now
    again = cli("up", "onename", "--no-provision", "--yes")
    assert again.code == 0, again.err
    assert cli("down", "onename", "--yes").code == 0
    assert _key_files(cli) == []


def test_down_in_another_region_keeps_the_key_the_home_region_needs(cli):
    """A key pair of NAME in a second region (left by an old dlenv, or imported by hand):
    removing it must not delete the private key the home region's environment needs."""
    import boto3

    seed_ubuntu(OTHER, endpoint_url=cli.endpoint)
    home = cli("up", "keepkey", "--no-provision", "--yes", "--region", OTHER)
    assert home.code == 0, home.err
    key = cli.home.parent / "Application Support" / "dlenv" / "keys" / "dlenv-keepkey"
    public = key.with_suffix(".pub").read_text()
    boto3.client("ec2", region_name="us-east-1", endpoint_url=cli.endpoint).import_key_pair(
        KeyName="dlenv-keepkey", PublicKeyMaterial=public.encode()
    )
    try:
        gone = cli("down", "keepkey", "--yes")  # us-east-1: only its key pair is there
        assert gone.code == 0, gone.err
        assert f"kept the local key of keepkey: it serves keepkey in {OTHER}" in gone.err
        assert key.is_file()
        assert dlenv_resources("us-east-1", "keepkey", cli.endpoint)["key_pairs"] == []
    finally:
        assert cli("down", "keepkey", "--yes", "--region", OTHER).code == 0
    assert not key.exists()
