"""`python -m dlenv_smoke`: the command line of the smoke test (argparse; no dlenv needed)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from dlenv_smoke import EXIT_FAIL


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m dlenv_smoke",
        description="PyTorch smoke test: environment, diagnosis, a real training run and "
        "figures against the GPU's datasheet peak. Exit 0 passed on GPU (or CPU "
        "with --device cpu), 10 passed but no usable GPU, 1 failed.",
        epilog="Environment: DLENV_EXPECT_GPUS (as --expect-gpus); DLENV_SMOKE_LIMIT_SCALE "
        "multiplies the per-phase time limits (e.g. 3 on a slow emulated machine); "
        "DLENV_SMOKE_SABOTAGE=labels|lr0|hang breaks the run on purpose (tests only).",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", dest="mode", action="store_const", const="quick", help="~15 s budget (default)"
    )
    mode.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="~60 s budget, steadier figures",
    )
    p.set_defaults(mode="quick")
    p.add_argument(
        "--device",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="auto: GPU when usable, else CPU (exit 10); cuda: fail without a GPU; "
        "cpu: test the CPU path on purpose (exit 0)",
    )
    p.add_argument(
        "--expect-gpus",
        type=int,
        default=None,
        metavar="N",
        help="GPUs this machine should have (e.g. 8 on a p4d); fewer visible fails "
        "[env: DLENV_EXPECT_GPUS]",
    )
    p.add_argument(
        "--amp",
        choices=("auto", "bf16", "fp16", "off"),
        default="auto",
        help="training precision (auto: bf16 from CC 8.0, fp16+GradScaler below, fp32 on CPU)",
    )
    args = p.parse_args(argv)
    if args.expect_gpus is None and os.environ.get("DLENV_EXPECT_GPUS", "").isdigit():
        args.expect_gpus = int(os.environ["DLENV_EXPECT_GPUS"])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before torch loads OpenMP: idle threads sleep instead of spinning. The smoke test often
    # shares a small machine (CI, a notebook host) and spinning intra-op threads turned CPU
    # contention into 5x slower training when measured on a busy 2-core runner.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from dlenv_smoke.job import LIMIT_SCALE_ENV, SABOTAGE_ENV, SABOTAGES, Options, run_job
    from dlenv_smoke.report import render_text

    sabotage = os.environ.get(SABOTAGE_ENV) or None
    if sabotage is not None and sabotage not in SABOTAGES:
        print(f"{SABOTAGE_ENV}={sabotage!r} is not one of {', '.join(SABOTAGES)}", file=sys.stderr)
        return EXIT_FAIL
    try:
        limit_scale = float(os.environ.get(LIMIT_SCALE_ENV) or 1.0)
        if not limit_scale > 0:
            raise ValueError(limit_scale)
    except ValueError:
        print(f"{LIMIT_SCALE_ENV} must be a positive number", file=sys.stderr)
        return EXIT_FAIL
    report = run_job(
        Options(
            device=args.device,
            mode=args.mode,
            expect_gpus=args.expect_gpus,
            amp=args.amp,
            sabotage=sabotage,
            limit_scale=limit_scale,
        )
    )
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(render_text(report) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    if report.get("timed_out"):
        os._exit(report["exit_code"])  # a phase thread is stuck in the driver: don't wait on it
    code: int = report["exit_code"]
    return code


if __name__ == "__main__":
    sys.exit(main())
