"""Provision hosts over SSH: probe facts, check every step (the plan), apply what is pending.

Round trips are few on purpose (each costs a full RTT on a far-away host): one probe, one
plan script that runs every check, then one command per pending step that re-checks, applies,
verifies and records the step on the host (/var/lib/dlenv/steps/<name>: fingerprint, step
digest, time). Because records and checks live on the host, a run that lost its connection is
simply run again: finished steps check out as done and the rest continue (resume), and a run on
a finished host applies nothing.

Hosts run in parallel on a thread pool, each with its own log file; one host failing never
stops the others, and every host gets a `HostResult`.

Library API:

    provision_environment(name, target, settings, terminal)      # `dlenv up`: one env, raises
    results = provision(targets, ProvisionOptions(...), terminal)  # many hosts, never raises
    raise_for_failures(results)   # one ProvisionError naming the host, step and log
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from dlenv.errors import DlenvError, ProvisionError, SshError, UsageError
from dlenv.provision.manifest import Stack, load_stack
from dlenv.provision.options import ProvisionOptions, check_upload_name
from dlenv.provision.osinfo import PROBE, HostFacts, parse_facts, require_supported
from dlenv.provision.render import body_arg, record_script, step_script
from dlenv.provision.steps import (
    REBOOT_EXIT,
    REMOTE_INSTALLERS_NAME,
    REMOTE_WHEELHOUSE_NAME,
    Step,
    StepSet,
    build_steps,
    upload_files,
)
from dlenv.ssh.command import chain, join
from dlenv.ssh.host import CommandResult, Host

if TYPE_CHECKING:
    from dlenv.ssh.target import SshTarget
    from dlenv.terminal import Terminal

REBOOT_TIMEOUT = 900
# The script arrives on stdin and runs from a file (so nothing in it can eat its own text), under
# a host-wide lock: a step left running by a dropped connection finishes before a re-run goes on.
_RUN_FILE = (
    'f=$(mktemp /tmp/dlenv-step.XXXXXX); cat > "$f"; exec 9>/run/dlenv-provision.lock; '
    'flock -w 3600 9; bash "$f" </dev/null; rc=$?; rm -f "$f"; exit $rc'
)

EventSink = Callable[[str, str, str, str], None]
"""(host label, event, step name, text): events are plan, start, line, done, skip, fail, reboot."""


REBOOT_MARKER = "/run/dlenv-reboot-pending"
"""Exists until the host reboots (/run is a tmpfs), so a fast reboot is still noticed."""


@dataclass
class StepState:
    name: str
    status: Literal["done", "pending", "skipped"]
    reason: str = ""
    record: str = ""


@dataclass
class HostResult:
    label: str
    ok: bool = False
    facts: HostFacts | None = None
    plan: list[StepState] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    failed_step: str | None = None
    error: DlenvError | None = None
    log_path: Path | None = None
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def pending(self) -> list[str]:
        return [s.name for s in self.plan if s.status == "pending"]


class HostLog:
    """Per-host log file: every command's output, with step headers and timings."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self._fh.write(text if text.endswith("\n") else text + "\n")
            self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def log_path_for(label: str) -> Path:
    from dlenv.paths import state_dir

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label)
    return state_dir() / "logs" / f"provision-{safe}.log"


# -- scripts sent to the host ----------------------------------------------------------------
def plan_script(stepset: StepSet) -> str:
    lines = [stepset.prelude]
    for step in stepset.active():
        lines.append(
            f"if bash -eo pipefail -c {body_arg(step.check)} </dev/null >/dev/null 2>&1; "
            f"then echo '@@check {step.name} 0'; else echo '@@check {step.name} 1'; fi"
        )
    return "\n".join(lines) + "\n"


VERSIONS_SCRIPT = """for d in torch torchvision jupyterlab ipykernel; do
  v=$(dlenv_dist_version "$d" 2>/dev/null || true); echo "@@version $d ${v:-}"
done
"""


# -- one host --------------------------------------------------------------------------------
class HostRun:
    def __init__(
        self,
        host: Host,
        stack: Stack,
        options: ProvisionOptions,
        *,
        log: HostLog,
        events: EventSink,
        plan_only: bool = False,
    ) -> None:
        self.host = host
        self.stack = stack
        self.options = options
        self.log = log
        self.events = events
        self.plan_only = plan_only
        self.result = HostResult(label=host.label, log_path=log.path)

    def _emit(self, event: str, step: str = "", text: str = "") -> None:
        self.events(self.host.label, event, step, text)

    def _sudo(self, script: str, *, step: str = "", stream: bool = False) -> CommandResult:
        def on_line(line: str) -> None:
            self.log.write(line)
            if stream:
                self._emit("line", step, line)

        res = self.host.sudo(_RUN_FILE, stdin=script, on_line=on_line)
        if res.lost:
            raise SshError(
                f"connection lost{' during ' + step if step else ''}",
                "re-run the same command: finished steps are recorded and it resumes",
                host=self.host.label,
                step=step or None,
            )
        return res

    def probe(self) -> HostFacts:
        res = self.host.run(PROBE)
        self.log.write(f"== probe (exit {res.exit_code})\n{res.output}")
        if res.lost:
            raise SshError("connection lost while probing the host", host=self.host.label)
        facts = parse_facts(res.output)
        require_supported(
            facts, self.stack.supported_os, self.stack.data["os"]["arch"], self.host.label
        )
        if facts.user != "root":
            sudo = self.host.run("sudo -n true")
            if sudo.exit_code != 0:
                raise ProvisionError(
                    f"{facts.user} cannot run sudo without a password; nothing was changed",
                    "provisioning needs root: give the login user passwordless sudo",
                    host=self.host.label,
                )
        return facts

    def execute(self) -> HostResult:
        start = time.monotonic()
        r = self.result
        facts = self.probe()
        r.facts = facts
        opts = self.options
        if opts.user is None:
            opts = opts.with_(user=facts.user)
        stepset = build_steps(self.stack, opts, facts)
        for step in stepset.steps:
            if step.skip_reason:
                r.plan.append(
                    StepState(
                        step.name, "skipped", step.skip_reason, facts.records.get(step.name, "")
                    )
                )
        if any(s.gpu_only and s.skip_reason == "no NVIDIA GPU" for s in stepset.steps):
            r.notes.append("no NVIDIA GPU: skipping driver/CUDA")
            self._emit("note", "", "no NVIDIA GPU: skipping driver/CUDA")
        res = self._sudo(plan_script(stepset))
        checks = dict(re.findall(r"^@@check (\S+) (\d)$", res.output, flags=re.M))
        states = []
        for step in stepset.steps:
            if step.skip_reason:
                states.append(next(s for s in r.plan if s.name == step.name))
                continue
            if step.name not in checks:
                raise ProvisionError(
                    f"the plan script did not report {step.name}:\n{res.tail()}",
                    host=self.host.label,
                )
            done = checks[step.name] == "0"
            states.append(
                StepState(
                    step.name,
                    "done" if done else "pending",
                    record=facts.records.get(step.name, ""),
                )
            )
        r.plan = states
        self._emit("plan", "", " ".join(f"{s.name}={s.status}" for s in states))
        if self.plan_only:
            r.ok = True
            r.seconds = time.monotonic() - start
            return r
        unrecorded = [
            s for s in stepset.active() if checks.get(s.name) == "0" and s.name not in facts.records
        ]
        if unrecorded:  # done on the host (an earlier run cut off before its record): record
            self._sudo(stepset.prelude + record_script(unrecorded))
        pending = [s for s in stepset.active() if checks.get(s.name) != "0"]
        self._upload(pending)
        for step in pending:
            self._apply(stepset, step)
        if pending or any(s.name in {"pytorch", "jupyterlab"} for s in stepset.active()):
            out = self._sudo(stepset.prelude + VERSIONS_SCRIPT).output
            r.versions = {
                m[0]: m[1] for m in re.findall(r"^@@version (\S+) ?(\S*)$", out, flags=re.M) if m[1]
            }
        r.ok = True
        r.seconds = time.monotonic() - start
        return r

    def _apply(self, stepset: StepSet, step: Step) -> None:
        self._emit("start", step.name)
        self.log.write(f"== {step.name}: apply ({time.strftime('%H:%M:%S')})")
        t0 = time.monotonic()
        script = stepset.prelude + step_script(step, reboot="exit")
        res = self._sudo(script, step=step.name, stream=True)
        if res.exit_code == REBOOT_EXIT:
            self._emit("reboot", step.name, "rebooting to load the new kernel modules")
            self.log.write(f"== {step.name}: reboot")
            # The marker lives in /run (a tmpfs): a reboot empties it, so "down" is seen even
            # when the host comes back faster than we poll (a transparent reconnect otherwise
            # hides the reboot).
            self.host.sudo(
                f"touch {REBOOT_MARKER} && "
                "((sleep 1; systemctl reboot || reboot) >/dev/null 2>&1 &)"
            )
            self._wait_until_down()
            self.host.reconnect(timeout=REBOOT_TIMEOUT)
            self._emit("note", step.name, "host is back after the reboot; verifying")
            res = self._sudo(script, step=step.name, stream=True)
        if res.exit_code != 0:
            self.result.failed_step = step.name
            self._emit("fail", step.name, res.tail(1))
            raise ProvisionError(
                f"step failed (exit {res.exit_code}); last lines:\n{res.tail(20)}",
                f"full log: {self.log.path}",
                host=self.host.label,
                step=step.name,
            )
        self.result.applied.append(step.name)
        self._emit("done", step.name, f"{time.monotonic() - t0:.1f}s")

    def _wait_until_down(self, timeout: float = 120) -> None:
        """Poll until the rebooting host drops the connection (so we never reconnect too early)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.host.run(join(["test", "-e", REBOOT_MARKER]), timeout=10).exit_code != 0:
                    return
            except DlenvError:
                return
            time.sleep(1)
        raise ProvisionError("the host did not go down for its reboot", host=self.host.label)

    def _upload(self, pending: list[Step]) -> None:
        needs_python = {"python-env", "pytorch", "jupyterlab", "user-packages"} & {
            s.name for s in pending
        }
        root = self.stack.get("python.root")
        uploads: list[tuple[Path, str]] = []
        if self.options.wheelhouse and needs_python:
            for wheel in sorted(Path(self.options.wheelhouse).glob("*.whl")):
                uploads.append((wheel, f"{root}/{REMOTE_WHEELHOUSE_NAME}/{wheel.name}"))
        if (
            self.options.conda_installer
            and "python-env" in needs_python
            and self.options.python == "conda"
        ):
            inst = Path(self.options.conda_installer)
            uploads.append((inst, f"{root}/{REMOTE_INSTALLERS_NAME}/{inst.name}"))
        with tempfile.TemporaryDirectory(prefix="dlenv-uploads-") as tmp:
            # Contents the steps read (the checked --ca-bundle, the user's requirements) travel
            # as files, never in a script.
            if {"ca-bundle", "user-packages"} & {s.name for s in pending}:
                for remote, text in upload_files(self.stack, self.options).items():
                    local = Path(tmp) / PurePosixPath(remote).name
                    local.write_text(text)
                    uploads.append((local, remote))
            if uploads:
                sync_files(self.host, uploads, log=self.log, emit=self._emit)


SMALL_FILE = 1024 * 1024
"""Files up to this size are compared by sha256 (a CA bundle can change without changing size);
bigger ones (wheels, installers: their names carry versions) by size."""
# Remote paths arrive on stdin, NUL-terminated (no path can hold a NUL), so no path is ever part
# of this command; it prints "size sha256" per path, in order ("-" for what is missing).
_LIST_FILES = (
    "while IFS= read -r -d '' p; do "
    'if s=$(stat -c %s -- "$p" 2>/dev/null); then '
    f'if [ "$s" -le {SMALL_FILE} ]; then h=$(sha256sum -- "$p" | cut -c1-64); else h=-; fi; '
    'else s=-; h=-; fi; echo "$s $h"; done'
)
_STAGE = re.compile(r"/tmp/dlenv-upload\.[A-Za-z0-9]+")


def check_uploads(files: Sequence[tuple[Path, str]]) -> None:
    """Refuse, before anything is uploaded, a file whose remote name is not one plain word."""
    for local, remote in files:
        path = PurePosixPath(remote)
        check_upload_name(Path(path.name), f"upload to {str(path.parent)!r}")
        if not path.is_absolute() or any(c in remote for c in "\n\r\0"):
            raise UsageError(f"upload of {str(local)!r}: remote path {remote!r} is not plain")


def _wanted(local: Path, size: str, digest: str) -> bool:
    """True when the remote copy (its size and, for small files, sha256) differs from `local`."""
    have = local.stat().st_size
    if size != str(have):
        return True
    if have > SMALL_FILE:
        return False
    return digest != hashlib.sha256(local.read_bytes()).hexdigest()


def sync_files(
    host: Host, files: Sequence[tuple[Path, str]], *, log: HostLog, emit: Callable[..., None]
) -> None:
    """Upload files whose remote copy is missing or differs (see `SMALL_FILE`).

    Files go to a user-writable staging dir over SFTP, then sudo moves them into place. Every
    name is checked first (`check_uploads`), and every command is built from argv lists
    (`dlenv.ssh.command`), so no file name can be anything but one inert word.
    """
    check_uploads(files)
    listing = "".join(f"{remote}\0" for _, remote in files)
    res = host.sudo(_LIST_FILES, stdin=listing)
    rows = [line.split(" ") for line in res.output.splitlines()]
    if res.exit_code != 0 or len(rows) != len(files) or any(len(r) != 2 for r in rows):
        rows = [["-", "-"]] * len(files)  # unknown: upload everything
    todo = [
        (lp, rp)
        for (lp, rp), (size, digest) in zip(files, rows, strict=True)
        if _wanted(lp, size, digest)
    ]
    if not todo:
        return
    emit("start", "upload", f"{len(todo)} file(s)")
    made = host.run(join(["mktemp", "-d", "/tmp/dlenv-upload.XXXXXX"]))
    stage = made.output.strip()
    if made.exit_code != 0 or not _STAGE.fullmatch(stage):
        raise ProvisionError(f"cannot make an upload staging dir: {made.tail(3)}", host=host.label)
    try:
        for local, remote in todo:
            log.write(f"== upload {local} -> {remote}")
            staged = f"{stage}/{PurePosixPath(remote).name}"
            host.put(local, staged)
            mv = host.sudo(
                chain(
                    ["mkdir", "-p", "--", str(PurePosixPath(remote).parent)],
                    ["mv", "-f", "--", staged, remote],
                    ["chmod", "644", "--", remote],
                )
            )
            if mv.exit_code != 0:
                raise ProvisionError(f"cannot place {remote}: {mv.tail(3)}", host=host.label)
    finally:
        host.run(join(["rm", "-rf", "--", stage]))
    emit("done", "upload", "")


# -- many hosts ------------------------------------------------------------------------------
def provision(
    targets: Sequence[SshTarget],
    options: ProvisionOptions,
    terminal: Terminal,
    *,
    plan_only: bool = False,
    stack: Stack | None = None,
    trust_new_host_key: bool = False,
    events: EventSink | None = None,
) -> list[HostResult]:
    """Provision every target in parallel; returns one HostResult per target (in input order).

    Never raises for a host's failure (see `raise_for_failures`); `events` receives progress
    in addition to the terminal view (tests use it to act mid-step).
    """
    from dlenv.provision.progress import ProgressView

    stack = stack or load_stack()
    view = ProgressView(terminal, [t.label for t in targets], plan_only=plan_only)

    def sink(label: str, event: str, step: str, text: str) -> None:
        view.event(label, event, step, text)
        if events:
            events(label, event, step, text)

    def one(target: SshTarget) -> HostResult:
        log = HostLog(log_path_for(target.label))
        log.write(
            f"\n==== dlenv provision {target.user}@{target.host}:{target.port} "
            f"stack {stack.fingerprint} at {time.strftime('%Y-%m-%d %H:%M:%S')}"
        )
        run: HostRun | None = None
        host: Host | None = None
        try:
            from dlenv.ssh.session import SshHost

            ssh = SshHost(target, trust_on_first_use=trust_new_host_key).connect()
            host = ssh
            if ssh.recorded_host_key:
                sink(target.label, "note", "", f"new host key recorded: {ssh.recorded_host_key}")
            run = HostRun(host, stack, options, log=log, events=sink, plan_only=plan_only)
            result = run.execute()
            sink(target.label, "finished", "", "")
        except DlenvError as exc:
            if exc.host is None:
                exc.host = target.label
            result = run.result if run else HostResult(label=target.label, log_path=log.path)
            result.ok = False
            result.error = exc
            log.write(f"== error: {exc.one_line()}")
            sink(target.label, "fail", exc.step or "", exc.message.splitlines()[0])
        finally:
            if host is not None:
                host.close()
            log.close()
        return result

    with view, ThreadPoolExecutor(max_workers=max(1, min(len(targets), 16))) as pool:
        results = list(pool.map(one, targets))
    return results


def raise_for_failures(results: Sequence[HostResult]) -> None:
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    if len(failed) == 1 and failed[0].error is not None:
        raise failed[0].error
    names = ", ".join(f"{r.label} ({r.failed_step or 'connect'})" for r in failed)
    raise ProvisionError(
        f"{len(failed)} of {len(results)} hosts failed: {names}",
        "see each host's log above; re-running resumes where each stopped",
    )


def provision_environment(
    name: str,
    target: SshTarget,
    settings: Any,
    terminal: Terminal,
    *,
    options: ProvisionOptions | None = None,
    plan_only: bool = False,
) -> HostResult:
    """`dlenv up` / `dlenv provision NAME`: one EC2 environment with the user's settings.

    Host keys must already be in `target.known_hosts` (recorded at launch); raises the host's
    ProvisionError/SshError on failure, and prints one summary line on success.
    """
    options = options or ProvisionOptions(python=settings.python, idle_stop=settings.idle_stop)
    [result] = provision(
        [target.with_(name=target.name or name)], options, terminal, plan_only=plan_only
    )
    raise_for_failures([result])
    if not plan_only:
        versions = ", ".join(f"{k} {v}" for k, v in result.versions.items())
        what = f"applied {len(result.applied)} step(s)" if result.applied else "already provisioned"
        terminal.success(
            f"{name}: {what} in {result.seconds:.1f}s" + (f" [{versions}]" if versions else "")
        )
    return result
