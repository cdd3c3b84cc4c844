"""The cluster smoke job: all-reduce bus bandwidth across every node and GPU, then a few DDP
training steps whose loss must fall. Started by torchrun on every node (`dlenv smoke-test NAME
--nodes` runs it through `dlenv run` and `dlenv-torchrun`); torch and the standard library only.

NCCL on GPUs, gloo on CPUs. Bus bandwidth is nccl-tests' figure for all-reduce:
busbw = algbw * 2(n-1)/n, algbw = bytes / seconds, so it is comparable with the links' speed
whatever the number of ranks. Global rank 0 prints the report as one line starting with
`DLENV_CLUSTER_REPORT ` (the orchestrator reads it from the streamed output) and writes it to
`--out` on its node.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

REPORT_PREFIX = "DLENV_CLUSTER_REPORT "
GPU_SIZES_MB = (8, 64, 256)
CPU_SIZES_MB = (1, 4, 16)


def bus_bandwidth(size_bytes: int, seconds: float, world: int) -> float:
    """All-reduce bus bandwidth in bytes/s (nccl-tests): size/time * 2(n-1)/n."""
    if seconds <= 0 or world < 1:
        raise ValueError("seconds must be positive and world at least 1")
    return size_bytes / seconds * (2 * (world - 1) / world)


def loss_fell(losses: list[float], window: int = 3) -> bool:
    """The mean of the last `window` losses is clearly below that of the first `window`."""
    if len(losses) < 2 * window:
        return False
    first = sum(losses[:window]) / window
    last = sum(losses[-window:]) / window
    return last < 0.9 * first


def _allreduce(
    torch: Any, dist: Any, device: Any, sizes_mb: tuple[int, ...], iters: int
) -> dict[str, Any]:
    world = dist.get_world_size()
    rank = dist.get_rank()
    probe = torch.full((1024,), float(rank + 1), device=device)
    dist.all_reduce(probe)
    expected = world * (world + 1) / 2
    verified = bool(torch.allclose(probe, torch.full_like(probe, expected)))
    results = []
    for mb in sizes_mb:
        size = mb * 1024 * 1024
        buf = torch.zeros(size // 4, dtype=torch.float32, device=device)
        for _ in range(2):  # warm-up: connections, NCCL's rings
            dist.all_reduce(buf)
        _sync(torch, device)
        dist.barrier()
        start = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(buf)
        _sync(torch, device)
        took = torch.tensor([(time.perf_counter() - start) / iters], dtype=torch.float64)
        took = took.to(device)
        dist.all_reduce(took, op=dist.ReduceOp.MAX)  # the slowest rank is the collective's time
        seconds = float(took.item())
        results.append(
            {
                "size_bytes": size,
                "seconds": seconds,
                "algbw_gbps": size / seconds * 8 / 1e9,
                "busbw_gbps": bus_bandwidth(size, seconds, world) * 8 / 1e9,
            }
        )
    return {
        "sum_verified": verified,
        "sizes": results,
        "busbw_gbps": max(r["busbw_gbps"] for r in results),
    }


def _sync(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train(torch: Any, dist: Any, device: Any, steps: int) -> dict[str, Any]:
    """A small MLP learning a fixed linear map under DDP: each rank its own slice of data, the
    gradients averaged by DDP's all-reduce; the loss (averaged over ranks) must fall."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)  # the same initial weights and target everywhere
    target = torch.randn(32, 1)
    model = torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
    ).to(device)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(1000 + rank)
    losses = []
    for _ in range(steps):
        x = torch.randn(64, 32, generator=gen)
        y = x @ target
        x, y = x.to(device), y.to(device)
        loss = torch.nn.functional.mse_loss(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(float(mean.item()) / world)
    # DDP keeps replicas identical: compare a checksum of the weights across ranks
    check = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
    low, high = check.clone(), check.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    in_sync = bool(
        abs(float(high.item()) - float(low.item())) <= 1e-6 * max(1.0, abs(float(high.item())))
    )
    return {
        "steps": steps,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "losses": [round(v, 6) for v in losses],
        "loss_fell": loss_fell(losses),
        "replicas_in_sync": in_sync,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlenv_smoke.cluster")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--iters", type=int, default=0, help="timed all-reduces per size")
    parser.add_argument("--steps", type=int, default=30, help="DDP training steps")
    parser.add_argument("--out", default=None, help="where rank 0 writes the JSON report")
    opts = parser.parse_args(argv)

    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available() and opts.device != "cpu"
    if opts.device == "cuda" and not cuda:
        print("dlenv_smoke.cluster: --device cuda, but no usable GPU", file=sys.stderr)
        return 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = "nccl" if cuda else "gloo"
    started = time.perf_counter()
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    where = {
        "rank": rank,
        "host": socket.gethostname(),
        "node_rank": os.environ.get("DLENV_NODE_RANK"),
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
    }
    placement: list[Any] = [None] * world
    dist.all_gather_object(placement, where)
    iters = opts.iters or (20 if cuda else 5)
    allreduce = _allreduce(torch, dist, device, GPU_SIZES_MB if cuda else CPU_SIZES_MB, iters)
    train = _train(torch, dist, device, opts.steps)
    dist.barrier()
    if rank == 0:
        report = {
            "backend": backend,
            "device": "cuda" if cuda else "cpu",
            "world_size": world,
            "nnodes": world // max(local_world, 1),
            "procs_per_node": local_world,
            "torch": torch.__version__,
            "ranks": placement,
            "allreduce": allreduce,
            "train": train,
            "seconds": round(time.perf_counter() - started, 2),
        }
        text = json.dumps(report, sort_keys=True)
        if opts.out:
            out = Path(opts.out).expanduser()
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n")
        print(REPORT_PREFIX + text, flush=True)
    # Every rank is past the last collective, so the job is done. No destroy_process_group():
    # under load, gloo's teardown can abort a worker ("terminate called without an active
    # exception", SIGABRT in a C++ destructor, seen on 1 of 3 CPU nodes in a loaded test run),
    # which fails the node's torchrun and leaves the others at the exit barrier for 5 minutes.
    # The caller leaves through os._exit, so no destructor runs at all.
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
