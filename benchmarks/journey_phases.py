"""Time each phase of the whole journey: launch, SSH wait, provision, tunnel, first kernel reply.

usage: python benchmarks/journey_phases.py
Runs the real CLI against moto's server and a fresh systemd host container (the end-to-end
test's setup; needs the Docker engine: scripts/ensure-docker). Launch times are moto's, so they
show dlenv's own overhead, not EC2's boot time; SSH, provisioning, tunnel and kernel are real.
"""

from __future__ import annotations

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
    from jupyter_ws import shutdown, start_kernel

    server, url = start_moto_server()
    hosts.ensure_images()
    work = Path(tempfile.mkdtemp(prefix="dlenv-bench-"))
    host = hosts.start_host(work=work)
    general.SAMPLE_CONSOLE_OUTPUT = console_with_host_keys(host.host_keys)
    state = work / "state"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DLENV_")},
        "AWS_ENDPOINT_URL": url,
        "HOME": str(work),
        "DLENV_STATE_DIR": str(state),
        "DLENV_ALLOW_CIDR": "203.0.113.9/32",
        **wire(state, host, "bench"),
    }

    def dlenv(*args: str) -> tuple[float, subprocess.CompletedProcess]:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "dlenv", *args],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode not in (0, 10):
            raise SystemExit(f"dlenv {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
        return time.perf_counter() - start, proc

    rows: list[tuple[str, float]] = []
    try:
        total, up = dlenv(
            "up", "bench", "--yes", "--python", "uv", "--wheelhouse", str(find_wheelhouse())
        )
        for name, secs in re.findall(r"✓ (.+?) \((\d+\.\d)s\)", up.stderr):
            rows.append((name, float(secs)))
        applied = re.search(r"applied (\d+) step\(s\) in ([\d.]+)s", up.stderr)
        if applied:
            rows.append((f"provision ({applied.group(1)} steps)", float(applied.group(2))))
        rows.append(("dlenv up, wall", total))
        secs, _ = dlenv("up", "bench", "--yes")
        rows.append(("dlenv up again (no-op: nothing to apply)", secs))
        secs, jup = dlenv("jupyter", "bench", "--no-browser", "--background", "--port", "18999")
        rows.append(("dlenv jupyter --background (token + tunnel)", secs))
        base, token = jup.stdout.strip().splitlines()[-1].split("/lab?token=")
        start = time.perf_counter()
        kernel = start_kernel(base, token)
        kernel.execute("1 + 1")
        rows.append(("first kernel reply through the tunnel", time.perf_counter() - start))
        shutdown(kernel)
        secs, _ = dlenv("smoke-test", "bench")
        rows.append(("dlenv smoke-test (CPU, --quick)", secs))
        dlenv("jupyter", "--stop", "bench")
        secs, _ = dlenv("down", "bench", "--yes")
        rows.append(("dlenv down", secs))
    finally:
        host.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(n) for n, _ in rows)
    print(f"{'phase':{width}}  seconds")
    for name, secs in rows:
        print(f"{name:{width}}  {secs:7.1f}")


if __name__ == "__main__":
    main()
