"""Races and interrupts through the real CLI, against moto's server behind tests/harness/aws_proxy.

Each "machine" is its own HOME and DLENV_STATE_DIR (keys, locks, include); the CLI runs in
subprocesses whose AWS_ENDPOINT_URL is the proxy, so a test can delay and hold their AWS calls
and signal them while a call is in flight. No SSH is ever attempted (`--no-provision`).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from awsfake import dlenv_resources
from harness.aws_proxy import AwsProxy
from motocli import Result, cli, moto_server  # noqa: F401  (fixtures)

REMAINS = re.compile(r"remains: (.*)")


class Spawned(subprocess.Popen):
    """A dlenv process whose output goes to files, so a test can read it while it runs."""

    out_path: Path
    err_path: Path

    def err_so_far(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = 60) -> None:
        """Wait until the process has printed `text` on stderr (e.g. that it is waiting)."""
        deadline = time.monotonic() + timeout
        while text not in self.err_so_far():
            if self.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dlenv never said {text!r}:\n{self.err_so_far()}")
            time.sleep(0.05)


def finish(proc: Spawned, timeout: float = 120) -> Result:
    """Wait for a spawned dlenv and collect its exit code and output."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"dlenv did not finish in {timeout}s:\n{proc.err_so_far()[-3000:]}"
        ) from None
    return Result(
        proc.returncode,
        proc.out_path.read_text(errors="replace"),
        proc.err_path.read_text(errors="replace"),
    )


@dataclass
class Machine:
    """One user's machine: a HOME and a state dir of its own, talking to AWS through the proxy."""

    env: dict[str, str]
    state: Path

    def spawn(self, *args: str) -> Spawned:
        logs = self.state.parent / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        label = re.sub(r"[^A-Za-z0-9-]+", "_", "-".join(args))[:60]
        stem = logs / f"{time.monotonic_ns()}-{label}"
        out_path, err_path = stem.with_suffix(".out"), stem.with_suffix(".err")
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = Spawned(
                [sys.executable, "-m", "dlenv", *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        proc.out_path, proc.err_path = out_path, err_path
        return proc

    def run(self, *args: str, timeout: float = 120) -> Result:
        return finish(self.spawn(*args), timeout)

    def key(self, name: str) -> Path:
        return self.state / "keys" / f"dlenv-{name}"

    def include(self) -> str:
        path = self.state / "ssh_config"
        return path.read_text(errors="replace") if path.exists() else ""


class Lab:
    """What the tests use: machines, the proxy, moto's own view, and small parsers."""

    NOTHING: ClassVar[dict[str, list[str]]] = {
        "instances": [],
        "security_groups": [],
        "key_pairs": [],
        "volumes": [],
    }
    finish = staticmethod(finish)

    def __init__(self, cli_fixture, proxy: AwsProxy, tmp_path: Path) -> None:
        self.cli = cli_fixture
        self.proxy = proxy
        self.tmp = tmp_path
        self.endpoint = cli_fixture.endpoint
        self._machines = 0

    def machine(self) -> Machine:
        """A machine of its own; the first one uses the `cli` fixture's HOME and state dir."""
        self._machines += 1
        env = {**self.cli.env, "AWS_ENDPOINT_URL": self.proxy.url}
        if self._machines > 1:
            root = self.tmp / f"machine{self._machines}"
            (root / "home").mkdir(parents=True)
            env["HOME"] = str(root / "home")
            env["DLENV_STATE_DIR"] = str(root / "state dir" / "dlenv")
        return Machine(env, Path(env["DLENV_STATE_DIR"]))

    def aws(self, name: str) -> dict[str, list[str]]:
        """What moto holds for environment `name` (asked directly, not through the proxy)."""
        return dlenv_resources("us-east-1", name, self.endpoint)

    def ec2(self):
        import boto3

        return boto3.client("ec2", region_name="us-east-1", endpoint_url=self.endpoint)

    def ec2_public_key(self, name: str) -> str:
        [pair] = self.ec2().describe_key_pairs(KeyNames=[f"dlenv-{name}"], IncludePublicKey=True)[
            "KeyPairs"
        ]
        return " ".join(pair["PublicKey"].split()[:2])

    @staticmethod
    def local_public_key(path: Path) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True, check=True
        ).stdout
        return " ".join(out.split()[:2])

    @staticmethod
    def remains_in_aws(err: str) -> dict[str, list[str]]:
        """The AWS resources the last `remains:` line lists, shaped like `in_aws`."""
        lines = REMAINS.findall(err)
        assert lines, f"no 'remains:' line in:\n{err}"
        text = lines[-1]
        return {
            "instances": sorted(re.findall(r"instance (i-[0-9a-f]+)", text)),
            "security_groups": sorted(re.findall(r"security group (sg-[0-9a-f]+)", text)),
            "key_pairs": sorted(re.findall(r"key pair (dlenv-[a-z0-9-]+)", text)),
        }

    def in_aws(self, name: str) -> dict[str, list[str]]:
        have = self.aws(name)
        return {k: sorted(have[k]) for k in ("instances", "security_groups", "key_pairs")}


@pytest.fixture
def proxy(moto_server):  # noqa: F811
    with AwsProxy(moto_server) as p:
        yield p


@pytest.fixture
def lab(cli, proxy, tmp_path) -> Lab:  # noqa: F811
    return Lab(cli, proxy, tmp_path)
