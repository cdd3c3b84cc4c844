"""Benchmark: dlenv's SSH runner vs the manual way (one `ssh host 'cmd'` per step, in sequence)
vs Ansible (ansible/site.yml).

Identical fresh host containers (systemd + sshd, Debian 12), one per column, in one run:
  1. fresh provision: dlenv on host A, ssh-per-step on host B, ansible-playbook on host C, all at
     the same time (same options, same load on this machine);
  2. no-op re-run on each finished host (Ansible twice: with its verifications but without the
     smoke-test job, which dlenv's own no-op run does not run either, and with
     dlenv_verify=false, convergence checks only);
  3. the no-op re-runs again through a TCP proxy adding 50 ms round-trip delay in front of sshd
     (this kernel has no netem), which shows what each approach's round trips cost.
The manual way runs each step as `if ! check; then apply; fi` over a new ssh connection per step
(what a person pasting commands, or a naive script, does). Ansible runs as its users run it:
`ansible-playbook -i INVENTORY ansible/site.yml` with SSH pipelining on (ControlPersist is
Ansible's default), python uv and the same wheelhouse, its fresh run without the smoke-test job
(dlenv's runner does not run it either).

    .venv/bin/python benchmarks/provision_bench.py [--columns dlenv,ssh,ansible] [--rtt-ms 50]
                                                   [--no-rtt] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "ansible"))

from dlenv.provision.manifest import load_stack  # noqa: E402
from dlenv.provision.options import ProvisionOptions  # noqa: E402
from dlenv.provision.render import render_step  # noqa: E402
from dlenv.provision.runner import provision  # noqa: E402
from dlenv.provision.steps import build_steps  # noqa: E402
from dlenv.terminal import Terminal  # noqa: E402
from harness import ensure_images, start_host  # noqa: E402
from harness.delay_proxy import DelayProxy  # noqa: E402

COLUMNS = ("dlenv", "ssh", "ansible")
LABELS = {"dlenv": "dlenv", "ssh": "ssh/step", "ansible": "ansible"}


def find_links() -> Path:
    value = (
        os.environ.get("PIP_FIND_LINKS")
        or subprocess.run(
            ["pip", "config", "get", "global.find-links"], capture_output=True, text=True
        ).stdout.strip()
    )
    return Path(value.split()[0].removeprefix("file://"))


def dlenv_run(target, options) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    [res] = provision([target], options, Terminal(interactive=False))
    if not res.ok:
        raise SystemExit(f"dlenv failed: {res.error.one_line() if res.error else '?'}")
    return time.monotonic() - start


def ssh_per_step(host, port: int, options, known_hosts: Path, *, upload: bool) -> float:  # type: ignore[no-untyped-def]
    """The manual way: scp the wheels, then one ssh connection per step, in order."""
    from dlenv.provision.osinfo import PROBE, parse_facts

    base = [
        "-i",
        str(host.key),
        "-o",
        "BatchMode=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
    ]
    dest = "dlenv@127.0.0.1"
    start = time.monotonic()
    facts = parse_facts(
        subprocess.run(
            ["ssh", "-p", str(port), *base, dest, PROBE], capture_output=True, text=True, check=True
        ).stdout
    )
    stepset = build_steps(load_stack(), options.with_(user="dlenv"), facts)
    if upload and options.wheelhouse:
        wheels = sorted(str(p) for p in Path(options.wheelhouse).glob("*.whl"))
        subprocess.run(["scp", "-q", "-P", str(port), *base, *wheels, f"{dest}:/tmp/"], check=True)
        names = " ".join(shlex.quote(Path(w).name) for w in wheels)
        subprocess.run(
            [
                "ssh",
                "-p",
                str(port),
                *base,
                dest,
                f"sudo mkdir -p /opt/dlenv/wheelhouse && cd /tmp && sudo mv {names} /opt/dlenv/wheelhouse/",
            ],
            check=True,
        )
    for step in stepset.active():
        script = stepset.prelude + render_step(step)
        # `ssh host 'cmd'`: the step travels as the command line, stdin stays empty
        proc = subprocess.run(
            ["ssh", "-p", str(port), *base, dest, "sudo bash -c " + shlex.quote(script)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(
                f"ssh-per-step failed at {step.name}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
    return time.monotonic() - start


def ansible_run(
    host, port: int, known_hosts: Path, wheelhouse: Path, work: Path, *extra: str
) -> float:  # type: ignore[no-untyped-def]
    """`ansible-playbook -i INVENTORY ansible/site.yml` against one host, from the repo root."""
    from types import SimpleNamespace

    from ansible_support import host_entry, playbook, write_inventory

    target = SimpleNamespace(port=port, key=host.key, known_hosts=known_hosts)
    control_dir = work / "cp"
    control_dir.mkdir(exist_ok=True)
    inventory = write_inventory(
        work / f"inventory-{port}.yml",
        {
            "bench": host_entry(
                target,
                dlenv_python_manager="uv",
                dlenv_wheelhouse=str(wheelhouse),
                ansible_control_path_dir=str(control_dir),
            )
        },
    )
    run = playbook(inventory, *extra)
    # Each run starts from a cold connection, as every dlenv run does: end the ControlPersist
    # master Ansible left behind (its sockets are in this run's own directory).
    for sock in control_dir.iterdir():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
            capture_output=True,
            check=False,
        )
    recap = run.recap.get("bench", {})
    if run.returncode != 0 or recap.get("failed", 1):
        raise SystemExit(f"ansible-playbook failed:\n{run.tail(60)}")
    print(f"    ansible {' '.join(extra) or '(defaults)'}: {run.seconds:.1f}s, {recap}", flush=True)
    return run.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--columns",
        default=",".join(COLUMNS),
        help="which to run, of dlenv,ssh,ansible (dlenv is always run: it is the baseline)",
    )
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("--no-rtt", action="store_true", help="skip the added-latency row")
    parser.add_argument("--keep", action="store_true", help="leave the host containers running")
    args = parser.parse_args()
    columns = ["dlenv"] + [c for c in args.columns.split(",") if c in COLUMNS and c != "dlenv"]
    require_engine_or_exit()
    ensure_images()
    work = Path(tempfile.mkdtemp(prefix="dlenv-bench-"))
    os.environ.setdefault("DLENV_STATE_DIR", str(work / "state"))
    wheelhouse = find_links()
    options = ProvisionOptions(python="uv", wheelhouse=wheelhouse)
    no_smoke = ("-e", "dlenv_verify_smoke=false")
    # no shared apt/uv caches: each host downloads what a fresh VM would
    hosts = {c: start_host(work=work, shared_caches=False) for c in columns}
    a, b, c = hosts["dlenv"], hosts.get("ssh"), hosts.get("ansible")
    rows: list[tuple[str, dict[str, float]]] = []
    try:
        print(
            "hosts: "
            + ", ".join(f"{h.container} ({LABELS[k]})" for k, h in hosts.items())
            + f"; stack {load_stack().fingerprint}; python uv; torch from {wheelhouse}",
            flush=True,
        )
        # All fresh provisions at once, so all see the same load on this machine.
        with ThreadPoolExecutor(len(columns)) as pool:
            futures = {"dlenv": pool.submit(dlenv_run, a.target(), options)}
            if b:
                futures["ssh"] = pool.submit(
                    ssh_per_step, b, b.port, options, b.known_hosts, upload=True
                )
            if c:
                futures["ansible"] = pool.submit(
                    ansible_run, c, c.port, c.known_hosts, wheelhouse, work, *no_smoke
                )
            fresh = {k: f.result() for k, f in futures.items()}
        print(
            "  fresh (concurrently): "
            + ", ".join(f"{LABELS[k]} {v:.1f}s" for k, v in fresh.items()),
            flush=True,
        )
        rows.append(("fresh provision", fresh))
        noop = {"dlenv": dlenv_run(a.target(), options)}
        if b:
            noop["ssh"] = ssh_per_step(b, b.port, options, b.known_hosts, upload=False)
        if c:
            noop["ansible"] = ansible_run(c, c.port, c.known_hosts, wheelhouse, work, *no_smoke)
        rows.append(("no-op re-run", noop))
        if c:
            rows.append(
                (
                    "no-op, ansible dlenv_verify=false",
                    {
                        "dlenv": noop["dlenv"],
                        "ansible": ansible_run(
                            c, c.port, c.known_hosts, wheelhouse, work, "-e", "dlenv_verify=false"
                        ),
                    },
                )
            )
        if not args.no_rtt:
            rows.append(
                (f"no-op re-run, +{args.rtt_ms:.0f} ms RTT", delayed(args, hosts, options, work))
            )
    finally:
        if not args.keep:
            for h in hosts.values():
                h.stop()
    print()
    shown = [k for k in COLUMNS if k in columns]
    header = f"{'scenario':36}" + "".join(f" {LABELS[k]:>9}" for k in shown)
    header += "".join(f" {LABELS[k] + '/dlenv':>14}" for k in shown if k != "dlenv")
    print(header)
    for name, figures in rows:
        line = f"{name:36}" + "".join(
            f" {figures[k]:8.1f}s" if k in figures else f" {'-':>9}" for k in shown
        )
        line += "".join(
            f" {figures[k] / figures['dlenv']:13.2f}x" if k in figures else f" {'-':>14}"
            for k in shown
            if k != "dlenv"
        )
        print(line)


def delayed(args, hosts, options, work: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The no-op re-runs through a proxy adding args.rtt_ms of round-trip time."""
    one_way = args.rtt_ms / 2000
    out: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        proxies = {
            k: stack.enter_context(DelayProxy(("127.0.0.1", h.port), one_way=one_way))
            for k, h in hosts.items()
        }
        kh = work / "known_hosts-delayed"
        kh.write_text(
            "".join(
                f"[127.0.0.1]:{proxies[k].port} {' '.join(key.split()[:2])}\n"
                for k, h in hosts.items()
                for key in h.host_keys
            )
        )
        out["dlenv"] = dlenv_run(
            hosts["dlenv"].target().with_(port=proxies["dlenv"].port, known_hosts=kh), options
        )
        if "ssh" in hosts:
            out["ssh"] = ssh_per_step(hosts["ssh"], proxies["ssh"].port, options, kh, upload=False)
        if "ansible" in hosts:
            out["ansible"] = ansible_run(
                hosts["ansible"],
                proxies["ansible"].port,
                kh,
                options.wheelhouse,
                work,
                "-e",
                "dlenv_verify_smoke=false",
            )
    return out


def require_engine_or_exit() -> None:
    from harness import engine_status

    ok, reason = engine_status()
    if not ok:
        raise SystemExit(f"benchmark needs a Docker engine: {reason}")


if __name__ == "__main__":
    main()
