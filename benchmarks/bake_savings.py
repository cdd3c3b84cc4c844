"""What a baked image saves: `dlenv up` from stock vs from a `dlenv ami bake` image, one run.

usage: python benchmarks/bake_savings.py [--show]     (--show: print each command's output too)
Runs the real CLI against moto's server with systemd host containers standing in for the
instances (the e2e bake test's setup; needs the Docker engine: scripts/ensure-docker):
  1. `dlenv ami bake` on a fresh container (its phases are printed);
  2. the cleaned builder is committed (the AMI's disk) and a new container starts from it;
     `dlenv up` there must pick the baked image and run only the per-instance steps;
  3. the baseline: `dlenv up --no-baked` on an identical fresh container, all steps.
Launch times are moto's (instant), so the figures are SSH + provisioning, which is what the
image saves; EC2's own boot time is the same for both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    import moto.ec2.responses.general as general

    from awsfake import console_with_host_keys, start_moto_server
    from docker_support import find_wheelhouse
    from harness import hosts
    from instancehost import wire

    server, url = start_moto_server()
    hosts.ensure_images()
    work = Path(tempfile.mkdtemp(prefix="dlenv-bench-"))
    state = work / "state"
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DLENV_")},
        "AWS_ENDPOINT_URL": url,
        "HOME": str(work),
        "DLENV_STATE_DIR": str(state),
        "DLENV_ALLOW_CIDR": "203.0.113.9/32",
        "DLENV_SSH_USER": hosts.USER,
    }
    flags = ["--python", "uv", "--wheelhouse", str(find_wheelhouse()), "--idle-stop", "30"]
    started: list[hosts.TestHost] = []
    committed: list[str] = []

    def on(host: hosts.TestHost, name: str) -> dict[str, str]:
        general.SAMPLE_CONSOLE_OUTPUT = console_with_host_keys(host.host_keys)
        return {**base_env, **wire(state, host, name)}

    def dlenv(env: dict[str, str], *args: str) -> tuple[float, subprocess.CompletedProcess]:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "dlenv", *args],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise SystemExit(f"dlenv {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
        if "--show" in sys.argv:
            print(f"$ dlenv {' '.join(args)}\n{proc.stderr}{proc.stdout}", flush=True)
        return time.monotonic() - t0, proc

    def applied(stderr: str) -> str:
        found = re.search(r": (applied \d+ step\(s\)|already provisioned) in ([\d.]+)s", stderr)
        return f"{found.group(1)}, provisioning {found.group(2)}s" if found else "?"

    try:
        builder = hosts.start_host(work=work)
        started.append(builder)
        seconds, bake = dlenv(on(builder, "bake-bench"), "ami", "bake", "--name", "bake-bench",
                              "--yes", "--json", *flags)  # fmt: skip
        report = json.loads(bake.stdout)
        tag = "dlenv-test/baked-bench"
        subprocess.run(
            ["docker", "commit", builder.container, tag], check=True, capture_output=True
        )
        committed.append(tag)

        from_image = hosts.start_host(tag, work=work)
        started.append(from_image)
        baked_s, baked = dlenv(on(from_image, "frombaked"), "up", "frombaked", "--yes", *flags)
        assert f"using baked image {report['image_id']}" in baked.stderr, baked.stderr[-2000:]

        stock = hosts.start_host(work=work)
        started.append(stock)
        stock_s, fresh = dlenv(on(stock, "fromstock"), "up", "fromstock", "--yes", "--no-baked",
                               *flags)  # fmt: skip
        assert "using baked image" not in fresh.stderr
        dlenv(base_env, "ami", "list")

        order = ["launch", "provision", "cleanup", "stop", "image"]
        phases = ", ".join(
            f"{k} {report['phases'][k]:.1f}s" for k in order if k in report["phases"]
        )
        print(f"bake (moto + one host container): {seconds:.1f}s wall [{phases}]")
        print(f"dlenv up from stock Ubuntu (baseline): {stock_s:6.1f}s  {applied(fresh.stderr)}")
        print(f"dlenv up from the baked image:         {baked_s:6.1f}s  {applied(baked.stderr)}")
        print(
            f"saved per launch: {stock_s - baked_s:.1f}s "
            f"({stock_s / baked_s:.1f}x faster than the baseline)"
        )
    finally:
        for host in started:
            host.stop()
        for image in committed:
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
