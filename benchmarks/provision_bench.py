"""Benchmark: dlenv's SSH runner vs the manual way (one `ssh host 'cmd'` per step, in sequence).

Two identical fresh host containers (systemd + sshd, Debian 12) in one run:
  1. fresh provision: dlenv on host A, ssh-per-step on host B, at the same time (same step
     bodies, same options, same load on this machine);
  2. no-op re-run on each finished host;
  3. the no-op re-runs again through a TCP proxy adding 50 ms round-trip delay in front of sshd
     (this kernel has no netem), which shows what each approach's round trips cost.
The manual way runs each step as `if ! check; then apply; fi` over a new ssh connection per step
(what a person pasting commands, or a naive script, does). Ansible is not compared: the Ansible
issue has not landed.

    .venv/bin/python benchmarks/provision_bench.py [--rtt-ms 50] [--keep]
"""

from __future__ import annotations

import argparse
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

from dlenv.provision.manifest import load_stack  # noqa: E402
from dlenv.provision.options import ProvisionOptions  # noqa: E402
from dlenv.provision.render import render_step  # noqa: E402
from dlenv.provision.runner import provision  # noqa: E402
from dlenv.provision.steps import build_steps  # noqa: E402
from dlenv.terminal import Terminal  # noqa: E402
from harness import ensure_images, start_host  # noqa: E402
from harness.delay_proxy import DelayProxy  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("--keep", action="store_true", help="leave the host containers running")
    args = parser.parse_args()
    require_engine_or_exit()
    ensure_images()
    work = Path(tempfile.mkdtemp(prefix="dlenv-bench-"))
    os.environ.setdefault("DLENV_STATE_DIR", str(work / "state"))
    options = ProvisionOptions(python="uv", wheelhouse=find_links())
    # no shared apt/uv caches: each host downloads what a fresh VM would
    a, b = start_host(work=work, shared_caches=False), start_host(work=work, shared_caches=False)
    rows: list[tuple[str, float, float]] = []
    try:
        print(
            f"hosts: A={a.container} (dlenv), B={b.container} (ssh per step); "
            f"stack {load_stack().fingerprint}; python uv; torch from {options.wheelhouse}",
            flush=True,
        )
        # Both fresh provisions at once, so both see the same load on this machine.
        with ThreadPoolExecutor(2) as pool:
            fut_d = pool.submit(dlenv_run, a.target(), options)
            fut_s = pool.submit(ssh_per_step, b, b.port, options, b.known_hosts, upload=True)
            fresh_dlenv, fresh_ssh = fut_d.result(), fut_s.result()
        print(
            f"  fresh (concurrently): dlenv {fresh_dlenv:.1f}s, ssh-per-step {fresh_ssh:.1f}s",
            flush=True,
        )
        rows.append(("fresh provision", fresh_dlenv, fresh_ssh))
        rows.append(
            (
                "no-op re-run",
                dlenv_run(a.target(), options),
                ssh_per_step(b, b.port, options, b.known_hosts, upload=False),
            )
        )
        one_way = args.rtt_ms / 2000
        with (
            DelayProxy(("127.0.0.1", a.port), one_way=one_way) as pa,
            DelayProxy(("127.0.0.1", b.port), one_way=one_way) as pb,
        ):
            kh = work / "known_hosts-delayed"
            kh.write_text(
                "".join(
                    f"[127.0.0.1]:{p} {' '.join(k.split()[:2])}\n"
                    for p, h in ((pa.port, a), (pb.port, b))
                    for k in h.host_keys
                )
            )
            ta = a.target().with_(port=pa.port, known_hosts=kh)
            rows.append(
                (
                    f"no-op re-run, +{args.rtt_ms:.0f} ms RTT",
                    dlenv_run(ta, options),
                    ssh_per_step(b, pb.port, options, kh, upload=False),
                )
            )
    finally:
        if not args.keep:
            a.stop()
            b.stop()
    print()
    print(f"{'scenario':34} {'dlenv':>9} {'ssh/step':>9} {'ssh/dlenv':>10}")
    for name, d, s in rows:
        print(f"{name:34} {d:8.1f}s {s:8.1f}s {s / d:9.2f}x")


def require_engine_or_exit() -> None:
    from harness import engine_status

    ok, reason = engine_status()
    if not ok:
        raise SystemExit(f"benchmark needs a Docker engine: {reason}")


if __name__ == "__main__":
    main()
