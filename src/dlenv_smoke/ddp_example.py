"""An example DDP training script for a dlenv cluster (copy it as the start of your own).

On a provisioned node it is part of the installed `dlenv_smoke` package, so it runs as

    dlenv run mycluster -- dlenv-torchrun -m dlenv_smoke.ddp_example --epochs 5

`dlenv-torchrun` starts one process per GPU on every node (one on a CPU node) with the
cluster's rendezvous; each process reads its place from the variables torchrun sets (RANK,
LOCAL_RANK, WORLD_SIZE). To start from a copy: `python -m dlenv_smoke.ddp_example --where`
prints this file's path on the node.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlenv_smoke.ddp_example")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--checkpoint", default="ddp_example.pt", help="saved by rank 0")
    parser.add_argument("--where", action="store_true", help="print this file's path and exit")
    opts = parser.parse_args(argv)
    if opts.where:
        print(os.path.abspath(__file__))
        return 0

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data import DataLoader, TensorDataset
    from torch.utils.data.distributed import DistributedSampler

    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()

    # a synthetic classification task: two Gaussian blobs (replace with your dataset)
    gen = torch.Generator().manual_seed(0)
    x = torch.cat(
        [torch.randn(4096, 20, generator=gen) + 1, torch.randn(4096, 20, generator=gen) - 1]
    )
    y = torch.cat([torch.ones(4096, dtype=torch.long), torch.zeros(4096, dtype=torch.long)])
    data = TensorDataset(x, y)
    sampler: DistributedSampler[tuple[torch.Tensor, ...]] = DistributedSampler(
        data, shuffle=True, seed=0
    )  # each rank its own shard
    loader = DataLoader(data, batch_size=opts.batch_size, sampler=sampler)

    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    ddp = DDP(model.to(device), device_ids=[local_rank] if cuda else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=opts.lr)
    for epoch in range(opts.epochs):
        sampler.set_epoch(epoch)  # a new shuffle per epoch, the same on every rank
        total = torch.zeros(2, device=device)
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = torch.nn.functional.cross_entropy(ddp(xb), yb)
            opt.zero_grad()
            loss.backward()  # DDP averages the gradients across every rank here
            opt.step()
            total += torch.stack(
                [loss.detach() * len(xb), torch.tensor(float(len(xb)), device=device)]
            )
        dist.all_reduce(total)
        if rank == 0:
            print(f"epoch {epoch}: loss {float(total[0] / total[1]):.4f}", flush=True)
    if rank == 0:
        torch.save(model.state_dict(), opts.checkpoint)  # the module DDP wraps
        print(f"saved {os.path.abspath(opts.checkpoint)}", flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
