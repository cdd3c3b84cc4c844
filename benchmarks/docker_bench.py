"""Measure the notebook image: size, cold build, rebuild after a config edit, pip vs uv.

usage: .venv/bin/python benchmarks/docker_bench.py [--base-image IMG] [--wheelhouse DIR]
                                                   [--ca-bundle FILE] [--skip-cold]

Needs a Docker engine. Defaults fit this project's machines (no registry): the local Debian 12
minbase from scripts/make-base-image and pip's find-links folder with the CPU torch wheel. Every
figure is measured in this run; nothing is quoted from elsewhere. Images are tagged dlenv-bench/*
and the repository's files are never modified (the config edit happens on a copy of docker/).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def main() -> int:
    from docker_support import BASE_IMAGE, extra_ca_bundle, find_wheelhouse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-image", default=BASE_IMAGE)
    parser.add_argument("--wheelhouse", type=Path)
    parser.add_argument("--ca-bundle", type=Path)
    parser.add_argument("--skip-cold", action="store_true", help="reuse cached layers")
    parser.add_argument(
        "--skip-legacy",
        action="store_true",
        help="do not also time a cold build with the engine's classic builder",
    )
    args = parser.parse_args()

    from dlenv.containers import context, engine
    from dlenv.containers.build import BuildRequest, build_image, builder_backend
    from dlenv.provision.manifest import load_stack
    from dlenv.terminal import Terminal

    tmp = Path(tempfile.mkdtemp(prefix="dlenv-bench-"))
    wheelhouse = args.wheelhouse or find_wheelhouse()
    ca = args.ca_bundle or extra_ca_bundle(tmp)
    subprocess.run([str(REPO / "scripts" / "make-base-image"), args.base_image], check=True)
    client = engine.connect(timeout=1800)
    quiet = Terminal(interactive=False)
    quiet.info = lambda text: None  # type: ignore[method-assign]  # keep the figures readable

    # a private copy of docker/ so the "touch a config file" step never edits the repository
    docker_copy = tmp / "docker"
    shutil.copytree(context.docker_dir(), docker_copy)
    context.docker_dir = lambda: docker_copy  # type: ignore[assignment]

    def build(no_cache: bool) -> float:
        req = BuildRequest(
            device="cpu",
            tag="dlenv-bench/notebook:cpu",
            base_image=args.base_image,
            wheelhouse=wheelhouse,
            ca_bundle=ca,
            no_cache=no_cache,
        )
        return build_image(client, quiet, req).seconds

    figures: dict[str, float] = {}
    backend = builder_backend()
    print(
        f"stack {load_stack().fingerprint}, base {args.base_image}, wheelhouse {wheelhouse}, "
        f"builder {backend}",
        flush=True,
    )
    if not args.skip_cold:
        figures["cold build (no cache)"] = build(no_cache=True)
        print(f"cold build:   {figures['cold build (no cache)']:7.1f} s ({backend})", flush=True)
        if backend == "buildkit" and not args.skip_legacy:
            os.environ["DLENV_BUILDER"] = "legacy"
            legacy = build(no_cache=True)
            del os.environ["DLENV_BUILDER"]
            print(
                f"cold build:   {legacy:7.1f} s (legacy builder through the Docker SDK: "
                f"{legacy / figures['cold build (no cache)']:.1f}x BuildKit's time)",
                flush=True,
            )
    figures["no-op rebuild"] = build(no_cache=False)
    print(f"no-op build:  {figures['no-op rebuild']:7.1f} s", flush=True)
    config = docker_copy / "jupyter_server_config.py"
    config.write_text(config.read_text() + f"\n# touched by docker_bench {time.time()}\n")
    figures["rebuild after config edit"] = build(no_cache=False)
    print(
        f"config edit:  {figures['rebuild after config edit']:7.1f} s (torch layer cached)",
        flush=True,
    )
    size = client.images.get("dlenv-bench/notebook:cpu").attrs["Size"]
    print(f"image size:   {size / 1e9:7.2f} GB ({size / 2**30:.2f} GiB)", flush=True)

    pip_s, uv_s = pip_vs_uv(client, args.base_image, wheelhouse, ca)
    print(
        f"install torch(cpu wheel)+jupyterlab+ipykernel into a fresh venv, cold caches:\n"
        f"  pip {pip_s:6.1f} s   uv {uv_s:6.1f} s   pip/uv = {pip_s / uv_s:.1f}x",
        flush=True,
    )
    if "cold build (no cache)" in figures:
        cold = figures["cold build (no cache)"]
        print(
            f"ratios: cold/config-edit = {cold / figures['rebuild after config edit']:.0f}x",
            flush=True,
        )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def pip_vs_uv(client, base_image: str, wheelhouse: Path, ca: Path | None) -> tuple[float, float]:
    """The same stack (the manifest's pins) installed with pip and with uv, in the image's system
    stage (so both get the same Python, CA and network), each into a fresh venv, no cache."""
    from dlenv.containers import context
    from dlenv.containers.progress import BuildProgress
    from dlenv.provision.manifest import load_stack
    from dlenv.terminal import Terminal

    stack = load_stack()
    ctx = context.assemble(stack, "cpu", ca_bundle=ca)
    try:
        progress = BuildProgress(Terminal(interactive=False))
        progress.terminal.info = lambda text: None  # type: ignore[method-assign]
        for event in client.api.build(
            path=str(ctx.path),
            target="system",
            tag="dlenv-bench/system",
            buildargs={"BASE_IMAGE": base_image},
            decode=True,
            rm=True,
        ):
            progress.feed(event)
        result = progress.close()
        if not result.ok:
            raise SystemExit(f"system stage build failed: {result.error}")
    finally:
        ctx.cleanup()
    pkgs = stack.packages
    torch_whl = sorted(wheelhouse.glob("torch-*+cpu-cp311-*.whl"))[-1].name
    wanted = f"/w/{torch_whl} jupyterlab=={pkgs['jupyterlab']} ipykernel=={pkgs['ipykernel']}"
    setup = {
        "pip": "python3 -m venv /v",
        "uv": (
            f"python3 -m venv /v && python3 -m venv /t && /t/bin/pip install -q "
            f"uv=={stack.get('uv.version')}"
        ),
    }
    install = {
        "pip": f"/v/bin/pip install -q --no-cache-dir --find-links /w {wanted}",
        "uv": f"/t/bin/uv pip install -q --no-cache --system-certs --python /v/bin/python "
        f"--find-links /w {wanted}",
    }
    times = {}
    for tool in ("pip", "uv"):
        # only the install is timed (not making the venv, nor installing uv itself)
        script = (
            f"set -e; export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt; {setup[tool]}; "
            f"s=$(date +%s.%N); {install[tool]}; e=$(date +%s.%N); "
            'python3 -c \'import sys; print("SECONDS", float(sys.argv[2]) - '
            "float(sys.argv[1]))' $s $e"
        )
        out = client.containers.run(
            "dlenv-bench/system",
            ["bash", "-c", script],
            remove=True,
            volumes={str(wheelhouse): {"bind": "/w", "mode": "ro"}},
            user="root",
        ).decode()
        times[tool] = next(
            float(ln.split()[1]) for ln in out.splitlines() if ln.startswith("SECONDS")
        )
    return times["pip"], times["uv"]


if __name__ == "__main__":
    sys.exit(main())
