"""`dlenv --region X CMD` and `dlenv CMD --region X` reach AWS the same way; the command's wins.

Every command is enumerated from `dlenv.cli.COMMANDS` (subcommands of groups included), so a
new command fails `test_every_command_is_covered` until it gets a case here or is listed as
exempt with the reason it never talks to AWS. Each case runs through the real CLI against moto's
server, where an environment exists only in eu-west-1 (moto's default region for these tests is
us-east-1): finding it, or a "... in eu-west-1" line, proves the region reached AWS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import click
import pytest

from awsfake import dlenv_resources, register_ubuntu, seed_ubuntu
from motocli import Cli, Result, make_cli

REGION = "eu-west-1"
ENV = "gflags"  # the environment that exists only in eu-west-1

EXEMPT: dict[str, str] = {
    "build": "builds Docker images on this machine; no AWS",
    "local up": "runs the notebook in local Docker; no AWS",
    "local down": "stops the local notebook container; no AWS",
    "local status": "inspects local Docker; no AWS",
    "local smoke-test": "runs the smoke test in the local container; no AWS",
    "config trust": "records a file's hash in the user config dir; no AWS",
    "config untrust": "removes a record from the user config dir; no AWS",
    "ssh-key path": "prints a local file path; no AWS",
    "ami script": "writes the bake's scripts to a folder; no AWS",
}


def command_paths() -> list[str]:
    """Every leaf command of `dlenv` ("up", "ami bake", ...), from the lazily loaded registry."""
    from dlenv.cli import COMMANDS, cli

    ctx = click.Context(cli)
    paths = []
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            paths += [f"{name} {sub}" for sub in command.list_commands(ctx)]
            if command.invoke_without_command:
                paths.append(name)  # `dlenv config` itself shows settings
        else:
            paths.append(name)
    return sorted(paths)


def _json(r: Result) -> dict:
    assert r.code == 0, r.err
    return json.loads(r.out)


def _not_found_here(r: Result, name: str = "nosuch") -> None:
    assert r.code == 1, (r.out, r.err)
    assert f"no environment named {name!r} in {REGION}" in r.err, r.err


def _no_cluster_here(r: Result) -> None:
    assert r.code == 1 and f"no cluster named 'nosuch' in {REGION}" in r.err, (r.out, r.err)


def _status_finds_env(r: Result) -> None:
    data = _json(r)
    assert data["region"] == REGION and [e["name"] for e in data["environments"]] == [ENV]


def _up_finds_env(r: Result) -> None:
    assert r.code == 0 and f"{ENV} is already running" in r.err, r.err


def _allow_ip(r: Result) -> None:
    assert r.code == 0 and f"{ENV}: SSH now allowed from 198.51.100.0/24 only" in r.err, r.err


def _doctor(r: Result) -> None:
    checks = {c["name"]: c for c in json.loads(r.out)["checks"]}
    assert checks["region"]["status"] == "OK" and checks["region"]["detail"] == REGION, checks


def _region_key(r: Result) -> None:
    assert _json(r)["region"] == REGION


def _ssh_key_list(r: Result) -> None:
    data = _json(r)
    assert data["region"] == REGION
    assert [k["ec2"] for k in data["keys"] if k["name"] == ENV] == [True], data


def _ssh_key_import(r: Result) -> None:
    assert r.code == 0 and "already holds this key" in r.err, r.err


def _ami_missing_here(r: Result) -> None:
    assert r.code == 2 and f"does not exist in {REGION}" in r.err, r.err


def _ami_rm(r: Result) -> None:
    assert r.code == 1 and f"no image ami-0123456789abcdef0 in {REGION}" in r.err, r.err


def _config(r: Result) -> None:
    assert _json(r)["region"] == {"value": REGION, "source": "--region"}


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]  # after the command path; `{ami}`/`{key}` filled in at run time
    check: Callable[[Result], None]
    serial: bool = False  # changes AWS: its two runs go one after the other


CASES: dict[str, Case] = {
    "up": Case((ENV, "--no-provision", "--yes"), _up_finds_env),
    "status": Case(("--json",), _status_finds_env),
    "ssh": Case(("nosuch",), _not_found_here),
    "stop": Case(("nosuch",), _not_found_here),
    "start": Case(("nosuch",), _not_found_here),
    "down": Case(("nosuch", "--yes"), _not_found_here),
    "doctor": Case(("--json",), _doctor),
    "prices": Case(("--json", "--family", "g5"), _region_key),
    "provision": Case(("nosuch",), _not_found_here),
    "jupyter": Case(("nosuch", "--no-browser"), _not_found_here),
    "smoke-test": Case(("nosuch",), _not_found_here),
    "config": Case(("--json",), _config),
    "allow-ip": Case((ENV, "--allow-cidr", "198.51.100.0/24"), _allow_ip, serial=True),
    "ami bake": Case(("--yes", "--ami", "{ami}", "--name", "gfbake"), _ami_missing_here),
    "ami list": Case(("--json",), _region_key),
    "ami rm": Case(("ami-0123456789abcdef0", "--yes"), _ami_rm),
    "ssh-key import": Case((ENV, "{key}"), _ssh_key_import),
    "ssh-key list": Case(("--json",), _ssh_key_list),
    "sync": Case(("nosuch", "--up"), _not_found_here),
    "budget": Case(("nosuch", "50"), _not_found_here),
    "keep-awake": Case(("nosuch", "2h"), _not_found_here),
    "run": Case(("nosuch",), _no_cluster_here),
}


def test_every_command_is_covered():
    paths = set(command_paths())
    assert not set(CASES) & set(EXEMPT)
    assert paths == set(CASES) | set(EXEMPT), (
        f"no global-flag case for {sorted(paths - set(CASES) - set(EXEMPT))}; "
        f"stale: {sorted((set(CASES) | set(EXEMPT)) - paths)}"
    )


@pytest.fixture(scope="module")
def eu(moto_server, tmp_path_factory) -> Cli:
    """A CLI whose state holds environment ENV, which exists in eu-west-1 only."""
    import boto3

    cli = make_cli(moto_server, tmp_path_factory.mktemp("gflags"))
    ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=moto_server)
    if not ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["ubuntu/*"]}])[
        "Images"
    ]:
        seed_ubuntu(REGION, endpoint_url=moto_server)
    r = cli("--region", REGION, "up", ENV, "--no-provision", "--yes")
    assert r.code == 0, r.err
    assert dlenv_resources("us-east-1", ENV, moto_server)["instances"] == []
    assert len(dlenv_resources(REGION, ENV, moto_server)["instances"]) == 1
    yield cli
    cli("down", ENV, "--yes", "--region", REGION)


def _fill(args: tuple[str, ...], ami: str, key: str) -> list[str]:
    return [a.replace("{ami}", ami).replace("{key}", key) for a in args]


@pytest.fixture(scope="module")
def both_ways(eu) -> dict[tuple[str, str], Result]:
    """Every case run as `dlenv --region R CMD ...` and `dlenv CMD ... --region R`, in parallel."""
    import boto3

    us_only = register_ubuntu(
        boto3.client("ec2", region_name="us-east-1", endpoint_url=eu.endpoint)
    )
    key = os.path.join(eu.env["DLENV_STATE_DIR"], "keys", f"dlenv-{ENV}")
    runs: dict[tuple[str, str], list[str]] = {}
    for path, case in CASES.items():
        words, args = path.split(), _fill(case.args, us_only, key)
        runs[(path, "global")] = ["--region", REGION, *words, *args]
        runs[(path, "command")] = [*words, *args, "--region", REGION]
    serial = {k: v for k, v in runs.items() if CASES[k[0]].serial}
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {k: pool.submit(eu, *argv) for k, argv in runs.items() if k not in serial}
        done = {k: f.result() for k, f in futures.items()}
    return done | {k: eu(*argv) for k, argv in serial.items()}


@pytest.mark.parametrize("where", ["global", "command"])
@pytest.mark.parametrize("path", sorted(CASES))
def test_region_reaches_aws(both_ways, path, where):
    result = both_ways[(path, where)]
    assert "Traceback" not in result.err and "unexpected" not in result.err, result.err
    CASES[path].check(result)


def test_command_level_wins_over_global(eu):
    found = eu("--region", "us-west-2", "status", ENV, "--json", "--region", REGION)
    assert [e["name"] for e in _json(found)["environments"]] == [ENV]
    missing = eu("--region", REGION, "status", ENV, "--region", "us-west-2")
    assert missing.code == 1 and f"no environment named {ENV!r} in us-west-2" in missing.err
    profile = eu("--profile", "outer", "status", "--profile", "inner")
    assert profile.code == 2 and "AWS profile 'inner' is not configured" in profile.err
    profile = eu("--profile", "outer", "status")
    assert profile.code == 2 and "AWS profile 'outer' is not configured" in profile.err


def test_lifecycle_both_ways_acts_in_the_given_region_only(eu):
    """The reported bug: `dlenv --region eu-west-1 down r1` terminated r1 in us-east-1."""
    name = "gfdup"
    # the us-east-1 copy is another machine's (one name is one environment per machine)
    elsewhere = {"DLENV_STATE_DIR": str(eu.home.parent / "other machine")}
    here = eu("up", name, "--no-provision", "--yes", env=elsewhere)  # us-east-1, the default
    assert here.code == 0, here.err
    there = eu("--region", REGION, "up", name, "--no-provision", "--yes")
    assert there.code == 0, there.err
    try:
        for stop, start in (
            (["--region", REGION, "stop", name], ["start", name, "--region", REGION]),
            (["stop", name, "--region", REGION], ["--region", REGION, "start", name]),
        ):
            assert eu(*stop).code == 0
            states = _json(eu("status", name, "--json", "--region", REGION))["environments"]
            assert states[0]["state"] == "stopped"
            assert _json(eu("status", name, "--json"))["environments"][0]["state"] == "running"
            assert eu(*start).code == 0
        r = eu("--region", REGION, "down", name, "--yes")
        assert r.code == 0, r.err
        assert dlenv_resources(REGION, name, eu.endpoint)["instances"] == []
        assert len(dlenv_resources("us-east-1", name, eu.endpoint)["instances"]) == 1
    finally:
        eu("down", name, "--yes", env=elsewhere)
        eu("down", name, "--yes", "--region", REGION)
    assert dlenv_resources("us-east-1", name, eu.endpoint)["instances"] == []
