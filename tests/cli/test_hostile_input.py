"""The hostile-input table: what a careful adversary types, plants in a repository, tags in EC2
or leaves in the state dir, through the real CLI against moto's server.

One case is one line of `CASES`. Every case asserts the same contract:
- the exit code;
- no traceback and no "unexpected ..." (the CLI's last-resort line for a bug);
- a failing case prints exactly one `error:` line and it names the problem (`message`); a case
  that succeeds (a refused setting is ignored with a notice, a corrupt file is repaired with a
  warning) prints no `error:` line and the line naming what happened;
- no canary file exists (every injected command is `touch <canary>`) and no ssh config written
  by dlenv mentions it;
- nothing was created in moto: the case's environment has no more instances, security groups or
  key pairs than before it ran (cases that `down` something must leave none).

Cases run in parallel (each in its own HOME, state dir and config dir; the state dir's path has a
space, like macOS's). `ssh` on PATH is a stand-in that only parses its configuration with the
real `ssh -G` (logged for the assertions) and exits 0: nothing here ever connects to the random
public IPs moto hands out. Cases that might signal a pid from a tunnel record run inside their
own PID namespace (unshare), so even a regression that does `killpg(1)` (= kill every process)
can hit nothing outside the case; a sentinel process there shows whether anything was signalled.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from awsfake import any_dlenv_resources, dlenv_resources
from motocli import isolated_env

REGION = "us-east-1"
NOTHING = {"instances": [], "security_groups": [], "key_pairs": [], "volumes": []}


@dataclass
class Ctx:
    """One case's world: its dirs, environment and the canary an injection would create."""

    base: Path
    env: dict[str, str]
    canary: Path

    @property
    def state(self) -> Path:
        return Path(self.env["DLENV_STATE_DIR"])

    @property
    def config(self) -> Path:
        return Path(self.env["DLENV_CONFIG_DIR"])

    @property
    def project(self) -> Path:
        return self.base / "project" / "sub dir"


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def _sub(value: str, ctx: Ctx, name: str) -> str:
    return (
        value.replace("{canary}", str(ctx.canary))
        .replace("{name}", name)
        .replace("{state}", str(ctx.state))
        .replace("{project}", str(ctx.project))
    )


SANDBOX = textwrap.dedent(
    """\
    sleep 60 & sentinel=$!
    "$@"; rc=$?
    state=$(cut -d' ' -f3 /proc/$sentinel/stat 2>/dev/null || echo gone)
    if [ "$state" = Z ] || [ "$state" = gone ]; then
        echo "error: SENTINEL SIGNALLED: dlenv signalled a process that is not its own" >&2
        rc=99
    fi
    kill $sentinel 2>/dev/null
    exit $rc
    """
)


def unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "true"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


def dlenv(ctx: Ctx, *args: str, sandbox: bool = False, timeout: int = 120) -> Run:
    """The real CLI in `ctx`: own session (a stray group signal cannot reach pytest)."""
    argv = [sys.executable, "-m", "dlenv", *args]
    if sandbox:
        argv = [
            "unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
            "sh", "-c", SANDBOX, "sh", *argv,
        ]  # fmt: skip
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=ctx.env,
        cwd=ctx.project,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        start_new_session=True,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


# -- setups: files written before the case runs -------------------------------------------------
def write(rel: str, data: str | bytes, mode: int | None = None) -> Callable[[Ctx], None]:
    """Write `data` ({canary}/{state} substituted) to ctx.base/rel ({state}/... or project/...)."""

    def setup(ctx: Ctx) -> None:
        path = Path(_sub(rel, ctx, "")) if rel.startswith("{") else ctx.base / rel
        if rel.startswith("project/"):
            path = ctx.project / rel.removeprefix("project/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(_sub(data, ctx, ""))
        if mode is not None:
            path.chmod(mode)

    return setup


def cli_step(*args: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        r = dlenv(ctx, *(_sub(a, ctx, "") for a in args))
        assert r.code == 0, r.err

    return setup


def chmod(rel: str, mode: int) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        Path(_sub(rel, ctx, "")).chmod(mode)

    return setup


def record(pid: int) -> Callable[[Ctx], None]:
    fields = {"name": "hx-rec", "pid": pid, "local_port": 8888, "url": "http://127.0.0.1:8888/lab"}
    return write("{state}/tunnels/hx-rec.json", json.dumps({**fields, "started": 0}))


def steps(*setups: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        for s in setups:
            s(ctx)

    return setup


# -- after-checks -----------------------------------------------------------------------------------
def key_is_private(ctx: Ctx, name: str) -> None:
    key = ctx.state / "keys" / f"dlenv-{name}"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600, oct(key.stat().st_mode)


def all_gone(ctx: Ctx, name: str) -> None:
    assert dlenv_resources(REGION, name, ctx.env["AWS_ENDPOINT_URL"]) == NOTHING


def no_record(ctx: Ctx, name: str) -> None:
    assert not (ctx.state / "tunnels" / "hx-rec.json").exists()


# -- environments planted in moto (by the real `dlenv up`, then tagged by an "adversary") --------
PLANTS: dict[str, dict[str, str]] = {
    "hx-tag-user": {"dlenv:user": "x\nProxyCommand touch {canary}"},
    "hx-tag-user2": {"dlenv:user": "root -oProxyCommand=touch_{canary}"},
    "hx-tag-idle": {"dlenv:idle-stop": "soon"},
    "hx-tag-python": {"dlenv:python": "pip;touch {canary}"},
    "hx-tag-fw": {"dlenv:frameworks": "jax;touch {canary}"},
    "hx-key644": {},
    "hx-down-kh": {},
    "hx-down-inc": {},
    "hx-bad-inc": {},
}
"""Environments some cases act on; each plant has its own state dir (its key lives there)."""


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    code: int
    message: str
    setup: Callable[[Ctx], None] | None = None
    plant: str | None = None
    env: dict[str, str | None] = field(default_factory=dict)  # None: unset the variable
    absent: tuple[str, ...] = ()
    check: Callable[[Ctx, str], None] | None = None
    sandbox: bool = False


TRUSTED = 'ssh_proxy_command = "touch {canary}"\nallow_cidr = "0.0.0.0/0"\ninstance = "g5.xlarge"\n'
BAD_AMI = ("--ami", "ami-0000000000000000f")  # fails after the CIDR is resolved, before launch
UP = ("up", "{name}", "--no-provision", "--yes")
NL = "\n"

CASES: list[Case] = [
    # -- names ----------------------------------------------------------------------------------
    Case("name-trailing-newline", ("up", "box\n", "--yes"), 2, "'box\\n' is not valid"),
    Case("name-uppercase", ("up", "Box", "--yes"), 2, "'Box' is not valid"),
    Case("name-dotdot", ("up", "../x", "--yes"), 2, "'../x' is not valid"),
    Case("name-41-chars", ("up", "a" * 41, "--yes"), 2, "is not valid"),
    Case("name-empty", ("up", "", "--yes"), 2, "'' is not valid"),
    Case("name-dash-rf-option", ("down", "-rf"), 2, "No such option"),
    Case("name-dash-rf", ("up", "--yes", "--", "-rf"), 2, "'-rf' is not valid"),
    Case("name-unicode", ("up", "bóx", "--yes"), 2, "is not valid"),
    Case("name-zero-width", ("up", "box\u200b", "--yes"), 2, "is not valid"),
    Case("name-space", ("up", "my box", "--yes"), 2, "'my box' is not valid"),
    Case("name-down-newline", ("down", "box\n", "--yes"), 2, "'box\\n' is not valid"),
    Case("name-key-path-traversal", ("ssh-key", "path", "../../etc/passwd"), 2, "is not valid"),
    Case("name-key-path-newline", ("ssh-key", "path", "box\n"), 2, "is not valid"),
    # -- flags ----------------------------------------------------------------------------------
    Case("cidr-host-bits", ("up", "hx-c1", "--allow-cidr", "10.1.2.3/8", "--yes"), 2,
         "did you mean 10.0.0.0/8 or 10.1.2.3/32?"),
    Case("cidr-host-bits-v6", ("up", "hx-c2", "--allow-cidr", "2001:db8::1/32", "--yes"), 2,
         "did you mean 2001:db8::/32 or 2001:db8::1/128?"),
    Case("cidr-garbage", ("up", "hx-c3", "--allow-cidr", "10.0.0.300/32", "--yes"), 2,
         "is not a valid CIDR"),
    Case("cidr-injection", ("up", "hx-c4", "--allow-cidr", "1.2.3.4/32 -oX", "--yes"), 2,
         "is not a valid CIDR"),
    Case("cidr-world-warns-on-up-yes", ("up", "hx-c5", "--allow-cidr", "0.0.0.0/0", "--yes",
         *BAD_AMI), 2, "does not exist", absent=()),
    Case("cidr-world-v6-warns", ("up", "hx-c6", "--allow-cidr", "::/0", "--yes", *BAD_AMI), 2,
         "does not exist"),
    Case("cidr-wide-warns", ("up", "hx-c7", "--allow-cidr", "64.0.0.0/2", "--yes", *BAD_AMI),
         2, "does not exist"),
    Case("region-injection", ("up", "hx-f1", "--region", "us-east-1;x", "--yes"), 2,
         "'us-east-1;x' is not an AWS region name"),
    Case("region-global-newline", ("--region", "eu-west-1\n", "status"), 2,
         "is not an AWS region name"),
    Case("region-env", ("status",), 2, "AWS_REGION: region = '../x' is not an AWS region",
         env={"AWS_REGION": "../x"}),
    Case("profile-injection", ("status", "--profile", "a\nb"), 2,
         "is not a valid AWS profile name"),
    Case("disk-negative", ("up", "hx-f2", "--disk", "-1", "--yes"), 2, "out of range"),
    Case("disk-huge", ("up", "hx-f3", "--disk", "99999999", "--yes"), 2, "out of range"),
    Case("disk-not-int", ("up", "hx-f4", "--disk", "1e3", "--yes"), 2, "is not a valid integer"),
    Case("ssh-user-newline", ("up", "hx-f5", "--ssh-user", "a\nProxyCommand touch {canary}",
         "--yes"), 2, "is not a valid login name"),
    Case("ssh-user-option", ("up", "hx-f6", "--ssh-user", "-oProxyCommand=x", "--yes"), 2,
         "is not a valid login name"),
    Case("host-shell", ("provision", "--host", "u@h;rm -rf ~"), 2, "not a host name"),
    Case("host-newline", ("smoke-test", "--host", "u@h\nProxyCommand touch {canary}"), 2,
         "is not USER@HOST[:PORT]"),
    Case("host-user-option", ("provision", "--host", "-oProxyCommand=touch_{canary}@h"), 2,
         "not a valid user name"),
    Case("instance-injection", ("up", "hx-f7", "--instance", "g4dn.xlarge;rm", "--yes"), 2,
         "is not an instance type"),
    Case("instance-typo", ("up", "hx-f8", "--instance", "g4dn.xlarg", "--yes"), 2,
         "unknown instance type 'g4dn.xlarg'"),
    Case("ami-path", ("up", "hx-f9", "--ami", "../../etc/passwd", "--yes"), 2,
         "is not an image spec"),
    Case("ami-subst", ("up", "hx-f10", "--ami", "ami-1234$(touch {canary})", "--yes"), 2,
         "is not an image spec"),
    Case("idle-stop-negative", ("up", "hx-f11", "--idle-stop", "-5", "--yes"), 2,
         "cannot be negative"),
    Case("idle-stop-huge", ("up", "hx-f12", "--idle-stop", "99999999", "--yes"), 2,
         "more than a week"),
    Case("ip-check-url-file", ("up", "hx-f13", "--yes"), 2, "is not an http(s) URL",
         env={"DLENV_IP_CHECK_URL": "file:///etc/passwd", "DLENV_ALLOW_CIDR": None}),
    Case("proxy-env-newline", ("config",), 2, "contains a control character",
         env={"DLENV_SSH_PROXY_COMMAND": "nc %h %p\nProxyCommand touch {canary}"}),
    # -- config values ----------------------------------------------------------------------------
    Case("project-proxy-ignored", ("config", "--json"), 0,
         "notice: ignoring ssh_proxy_command, allow_cidr from",
         setup=write("project/../dlenv.toml", TRUSTED), absent=("touch",)),
    Case("project-cidr-ignored-on-up", ("up", "hx-p1", "--yes", *BAD_AMI), 2, "does not exist",
         setup=write("project/dlenv.toml", 'allow_cidr = "0.0.0.0/0"\n'),
         absent=("whole internet",)),
    Case("project-trusted-applies", ("config", "--json"), 0, '"value": "touch',
         setup=steps(write("project/dlenv.toml", TRUSTED), cli_step("config", "trust"))),
    Case("project-trusted-world-warns", ("up", "hx-p2", "--yes", *BAD_AMI), 2, "does not exist",
         setup=steps(write("project/dlenv.toml", TRUSTED), cli_step("config", "trust")),
         env={"DLENV_ALLOW_CIDR": None}),
    Case("project-changed-ignored", ("config", "--json"), 0, "changed since you trusted it",
         setup=steps(write("project/dlenv.toml", TRUSTED), cli_step("config", "trust"),
                     write("project/dlenv.toml", TRUSTED + 'disk = 200\n')),
         absent=("touch",)),
    Case("project-untrusted-again", ("config", "--json"), 0, "untrusted project config",
         setup=steps(write("project/dlenv.toml", TRUSTED), cli_step("config", "trust"),
                     cli_step("config", "untrust", "{project}/dlenv.toml")),
         absent=("touch",)),
    Case("project-malformed", ("status",), 2, "dlenv.toml: ",
         setup=write("project/dlenv.toml", "[[broken\n")),
    Case("project-binary", ("status",), 2, "not UTF-8",
         setup=write("project/dlenv.toml", b"\xff\xfe\x00\x01garbage")),
    Case("project-unknown-key", ("status",), 2, "unknown setting 'proxy_command'",
         setup=write("project/dlenv.toml", 'proxy_command = "x"\n')),
    Case("project-wrong-type", ("status",), 2, "is not a string",
         setup=write("project/dlenv.toml", 'instance = ["g5.xlarge"]\n')),
    Case("project-float-disk", ("status",), 2, "is not an integer",
         setup=write("project/dlenv.toml", "disk = 100.5\n")),
    Case("user-config-host-bits", ("up", "hx-p3", "--yes"), 2, "did you mean 10.0.0.0/8",
         setup=write("config/dlenv.toml", 'allow_cidr = "10.1.2.3/8"\n'),
         env={"DLENV_ALLOW_CIDR": None}),
    Case("trust-not-a-dlenv-toml", ("config", "trust", "/etc/hostname"), 2,
         "is not a dlenv.toml"),
    Case("trust-missing", ("config", "trust"), 2, "no dlenv.toml in"),
    Case("trust-store-corrupt", ("config",), 1, "trusted project list",
         setup=steps(write("project/dlenv.toml", TRUSTED),
                     write("config/trusted-projects.json", "{not json"))),
    # -- tags written into moto -------------------------------------------------------------------
    Case("tag-user-ssh", ("ssh", "{name}", "--", "true"), 2, "not a valid user name",
         plant="hx-tag-user"),
    Case("tag-user-jupyter", ("jupyter", "{name}", "--no-browser"), 2, "not a valid user name",
         plant="hx-tag-user"),
    Case("tag-user-provision", ("provision", "{name}"), 2, "not a valid user name",
         plant="hx-tag-user"),
    Case("tag-user-option-ssh", ("ssh", "{name}", "--", "true"), 2, "not a valid user name",
         plant="hx-tag-user2"),
    Case("tag-idle-stop", ("provision", "{name}"), 2, "is not an integer", plant="hx-tag-idle"),
    Case("tag-python", ("provision", "{name}"), 2, "is not conda or uv", plant="hx-tag-python"),
    Case("tag-frameworks", ("provision", "{name}"), 2, "unknown framework", plant="hx-tag-fw"),
    # -- state files ------------------------------------------------------------------------------
    Case("state-dir-world-writable", ("status",), 1, "is writable by other users",
         setup=steps(write("{state}/x", ""), chmod("{state}", 0o777))),
    Case("key-0644-fixed", ("ssh", "{name}", "--", "true"), 0, "accessible to other users",
         plant="hx-key644", setup=chmod("{state}/keys/dlenv-hx-key644", 0o644),
         check=key_is_private),
    Case("corrupt-include-ssh", ("ssh", "{name}", "--", "true"), 1, "ssh_config",
         plant="hx-bad-inc", setup=write("{state}/ssh_config", b"\x00\xff\xfe binary\n")),
    Case("corrupt-known-hosts-down", ("down", "{name}", "--yes"), 0, "known_hosts",
         plant="hx-down-kh", setup=write("{state}/known_hosts", b"\xff\xfe\x00 garbage\n"),
         check=all_gone),
    Case("corrupt-include-down", ("down", "{name}", "--yes"), 0, "ssh_config",
         plant="hx-down-inc", setup=write("{state}/ssh_config", b"\xff\xfe\x00 garbage\n"),
         check=all_gone),
    Case("tunnel-record-corrupt", ("jupyter", "--stop"), 0, "tunnel record",
         setup=write("{state}/tunnels/hx-rec.json", "{not json"), check=no_record,
         sandbox=True),
    Case("tunnel-record-binary", ("status", "--json"), 0, "tunnel record",
         setup=write("{state}/tunnels/hx-rec.json", b"\x00\xff\xfe"), check=no_record),
    Case("tunnel-record-pid-0", ("jupyter", "--stop"), 0, "tunnel record", setup=record(0),
         check=no_record, sandbox=True),
    Case("tunnel-record-pid-1", ("jupyter", "--stop"), 0, "tunnel record", setup=record(1),
         check=no_record, sandbox=True),
    Case("tunnel-record-pid-negative", ("jupyter", "--stop"), 0, "tunnel record",
         setup=record(-1), check=no_record, sandbox=True),
]  # fmt: skip

EXTRA_LINES: dict[str, tuple[str, ...]] = {
    "cidr-world-warns-on-up-yes": ("warning: SSH (port 22) will be open to the whole internet",),
    "cidr-world-v6-warns": ("open to the whole internet (::/0)",),
    "cidr-wide-warns": ("a large part of the internet",),
    "project-cidr-ignored-on-up": ("notice: ignoring allow_cidr from",),
    "project-trusted-world-warns": ("open to the whole internet",),
    "project-trusted-applies": ('"source": "',),
    "instance-typo": ("hint: did you mean g4dn.xlarge?",),
    "cidr-host-bits": ("hint: use 10.1.2.3/32 for that one address",),
}
"""Further lines some cases must print besides their main one (warnings, notices)."""


def test_the_table_is_big_and_unique():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
    assert set(EXTRA_LINES) <= {c.id for c in CASES}
    assert {c.plant for c in CASES if c.plant} == set(PLANTS)


# -- running the table --------------------------------------------------------------------------------
FAKE_SSH = """#!/bin/sh
# Parse the configuration the way ssh would (never connect), log it, succeed.
{real} -G "$@" >> "$DLENV_TEST_SSH_LOG" 2>&1
exit 0
"""


def _make_ctx(root: Path, label: str, endpoint: str, bin_dir: Path) -> Ctx:
    base = root / label
    base.mkdir()
    (base / "home").mkdir()
    env = isolated_env(endpoint, base)
    env.update(
        {
            "DLENV_TEST_SSH_LOG": str(base / "ssh-G.log"),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    if label in PLANTS:  # safety net: an SSH attempt to moto's fake public IP fails at once
        env["DLENV_SSH_PROXY_COMMAND"] = "false"
    ctx = Ctx(base, env, root / f"canary-{label}")
    ctx.project.mkdir(parents=True)
    return ctx


def _plant(ctx: Ctx, name: str, tags: dict[str, str]) -> None:
    import boto3

    r = dlenv(ctx, *(a.replace("{name}", name) for a in UP))
    assert r.code == 0, r.err
    if tags:
        ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=ctx.env["AWS_ENDPOINT_URL"])
        [instance] = dlenv_resources(REGION, name, ctx.env["AWS_ENDPOINT_URL"])["instances"]
        ec2.create_tags(
            Resources=[instance],
            Tags=[{"Key": k, "Value": _sub(v, ctx, name)} for k, v in tags.items()],
        )


@dataclass
class Outcome:
    ctx: Ctx
    name: str
    before: dict[str, list[str]]
    result: Run
    after: dict[str, list[str]]


@pytest.fixture(scope="module")
def table(moto_server, tmp_path_factory) -> dict[str, Outcome]:
    root = tmp_path_factory.mktemp("hostile")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    real_ssh = shutil.which("ssh")
    assert real_ssh, "the tests need OpenSSH's ssh (for ssh -G)"
    (bin_dir / "ssh").write_text(FAKE_SSH.format(real=real_ssh))
    (bin_dir / "ssh").chmod(0o755)
    sandbox_ok = unshare_works()
    plants = {name: _make_ctx(root, name, moto_server, bin_dir) for name in PLANTS}
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda n: _plant(plants[n], n, PLANTS[n]), PLANTS))
    global_before = any_dlenv_resources(REGION, moto_server)

    def one(case: Case) -> Outcome | None:
        if case.sandbox and not sandbox_ok:
            return None
        ctx = plants[case.plant] if case.plant else _make_ctx(root, case.id, moto_server, bin_dir)
        if case.plant:
            ctx = Ctx(ctx.base, dict(ctx.env), ctx.canary)  # the case's env changes stay its own
        name = case.plant or next((a for a in case.args if a.startswith("hx-")), "none")
        if case.setup:
            case.setup(ctx)
        for k, v in case.env.items():
            if v is None:
                ctx.env.pop(k, None)
            else:
                ctx.env[k] = _sub(v, ctx, name)
        before = dlenv_resources(REGION, name, moto_server)
        result = dlenv(ctx, *(_sub(a, ctx, name) for a in case.args), sandbox=case.sandbox)
        return Outcome(ctx, name, before, result, dlenv_resources(REGION, name, moto_server))

    # cases sharing a plant run one after the other (their setups touch the same state dir)
    groups: dict[str, list[Case]] = {}
    for case in CASES:
        groups.setdefault(case.plant or case.id, []).append(case)
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {
            key: pool.submit(lambda cs: [(c.id, one(c)) for c in cs], cases)
            for key, cases in groups.items()
        }
        outcomes = {cid: o for f in futures.values() for cid, o in f.result()}
    global_after = any_dlenv_resources(REGION, moto_server)
    for kind, items in global_after.items():
        assert set(items) <= set(global_before[kind]), f"bad input created {kind}: {items}"
    yield outcomes
    for name, ctx in plants.items():
        dlenv(ctx, "down", name, "--yes")


def _error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.lower().startswith("error:")]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(table, case):
    outcome = table[case.id]
    if outcome is None:
        pytest.skip("needs a PID namespace (unshare) so that a regression cannot signal pid 1")
    r, ctx = outcome.result, outcome.ctx
    shown = f"exit {r.code}\n--- stdout\n{r.out}\n--- stderr\n{r.err}"
    assert "Traceback" not in r.text and "unexpected" not in r.err, shown
    assert "SENTINEL SIGNALLED" not in r.err, shown
    assert r.code == case.code, shown
    errors = _error_lines(r.err)
    if case.code:
        assert len(errors) == 1, shown
        assert case.message in errors[0], shown
    else:
        assert errors == [], shown
        assert case.message in r.text, shown
    for extra in EXTRA_LINES.get(case.id, ()):
        assert extra in r.text, shown
    for word in case.absent:
        assert word not in r.out, shown
    # no injected command ran, and none was written where ssh would read it
    assert not ctx.canary.exists(), f"canary created: {shown}"
    for written in (ctx.state / "ssh_config", ctx.base / "ssh-G.log"):
        if written.is_file():
            text = written.read_text(errors="replace")
            assert str(ctx.canary) not in text and "touch" not in text.lower(), text
    # nothing was created in AWS (a case may only remove what it was asked to)
    for kind, items in outcome.after.items():
        assert set(items) <= set(outcome.before[kind]), f"{kind} created: {items}\n{shown}"
    if case.check:
        case.check(ctx, outcome.name)
