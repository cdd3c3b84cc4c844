"""A small CNN trained for real: proof that forward, backward, optimiser, AMP and DataLoader work.

The check is behavioural, not "it ran": held-out accuracy must end well above chance and the
held-out loss must fall by a stated factor. A wrong kernel, a broken cuDNN, NaNs from a bad AMP
setup or a mis-wired loader all show up as a model that does not learn.

Precision: on a GPU with compute capability >= 8.0, bf16 autocast (no scaler needed); below
8.0 (T4, V100), fp16 autocast with a GradScaler, because bf16 is emulated there at a fraction of
the speed. On CPU the default is plain fp32: CPUs without AVX512-BF16/AMX (most CI runners,
including 2-core ones) run bf16 autocast *slower* than fp32, and the CPU run exists to prove the
pipeline end to end, not to benchmark. `--amp bf16|fp16` forces a precision anywhere, which is
how the tests cover the autocast and GradScaler paths without a GPU.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from dlenv_smoke.data import CLASSES, BatchDataset, make_lines

MIN_ACCURACY = 0.80
"""Held-out accuracy to pass; chance is 1/4."""
MIN_LOSS_FACTOR = 4.0
"""Held-out cross-entropy must fall at least this many times (from ~ln 4 = 1.39 at init)."""


@dataclass
class TrainConfig:
    device: str = "cpu"
    amp: str = "auto"  # auto | bf16 | fp16 | off
    image_size: int = 16
    width: int = 16
    train_samples: int = 4096
    eval_samples: int = 1024
    batch_size: int = 64
    epochs: int = 2
    lr: float = 3e-3
    workers: int = 1
    seed: int = 1234
    sabotage: str | None = None
    """Test-only ways to break the run on purpose: 'labels' (shuffled), 'lr0' or 'hang'."""
    time_limit_s: float = 60.0
    """Soft limit: training stops early (and then fails its checks) rather than overrun."""


class SmallCNN(nn.Module):
    def __init__(self, width: int, classes: int = len(CLASSES)) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def choose_precision(device: torch.device, requested: str = "auto") -> tuple[str, bool]:
    """('bf16'|'fp16'|'fp32', use_grad_scaler) for a device and a `--amp` request."""
    if requested == "off":
        return "fp32", False
    if requested in {"bf16", "fp16"}:
        return requested, requested == "fp16"
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return ("bf16", False) if major >= 8 else ("fp16", True)
    return "fp32", False


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers only slice tensors; don't fight the trainer for cores


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    precision: str,
    batch: int = 1024,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on held-out data."""
    model.eval()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    with torch.no_grad(), _autocast(device, precision):
        for i in range(0, len(labels), batch):
            x = images[i : i + batch].to(device, non_blocking=True)
            y = labels[i : i + batch].to(device, non_blocking=True)
            logits = model(x).float()
            total_loss += nn.functional.cross_entropy(logits, y, reduction="sum").double()
            correct += (logits.argmax(1) == y).sum()
    model.train()
    n = len(labels)
    return total_loss.item() / n, correct.item() / n


def make_loader(
    ds: BatchDataset, cfg: TrainConfig, workers: int, pin: bool
) -> torch.utils.data.DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(cfg.seed)
    sampler = torch.utils.data.BatchSampler(
        torch.utils.data.RandomSampler(ds, generator=g), cfg.batch_size, drop_last=True
    )
    return torch.utils.data.DataLoader(
        ds,
        sampler=sampler,
        batch_size=None,
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=_worker_init if workers else None,
        timeout=30 if workers else 0,  # a dead worker raises instead of hanging the job
    )


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, evaluate and judge; returns the report's `train` section (JSON-able)."""
    if cfg.sabotage == "hang":
        threading.Event().wait()  # test-only: a phase that never returns, like a wedged GPU
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    precision, use_scaler = choose_precision(device, cfg.amp)

    x_train, y_train = make_lines(cfg.train_samples, cfg.image_size, cfg.seed)
    if cfg.sabotage == "labels":
        perm = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(7))
        y_train = y_train[perm]
    x_eval, y_eval = make_lines(cfg.eval_samples, cfg.image_size, cfg.seed + 1)
    if device.type == "cuda":
        x_eval, y_eval = x_eval.to(device), y_eval.to(device)

    model = SmallCNN(cfg.width).to(device)
    lr = 0.0 if cfg.sabotage == "lr0" else cfg.lr
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = cfg.train_samples // cfg.batch_size
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=max(lr, 1e-12), total_steps=steps_per_epoch * cfg.epochs, pct_start=0.15
        )
        if lr > 0
        else None
    )
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    loss_fn = nn.CrossEntropyLoss()

    loss_before, acc_before = evaluate(model, x_eval, y_eval, device, precision)

    ds = BatchDataset(x_train, y_train)
    pin = device.type == "cuda"
    workers = cfg.workers
    loader_error = None
    losses: list[torch.Tensor] = []
    steps = 0
    timed_steps = 0
    start = time.monotonic()
    t_first = None
    stopped_early = False
    for _epoch in range(cfg.epochs):
        loader = make_loader(ds, cfg, workers, pin)
        try:
            batches = iter(loader)
            while True:
                try:
                    xb, yb = next(batches)
                except StopIteration:
                    break
                xb = xb.to(device, non_blocking=True)
                yb = yb.to(device, non_blocking=True)
                with _autocast(device, precision):
                    loss = loss_fn(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                if sched is not None:
                    sched.step()
                losses.append(loss.detach().float())
                steps += 1
                if steps == 10:  # exclude start-up (workers, cuDNN autotune) from samples/s
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    t_first = time.monotonic()
                    timed_steps = 0
                elif t_first is not None:
                    timed_steps += 1
                if time.monotonic() - start > cfg.time_limit_s:
                    stopped_early = True
                    break
        except RuntimeError as exc:
            if workers == 0 or "worker" not in str(exc).lower():
                raise
            # a crashed worker (typically /dev/shm full): record it, go on in-process
            loader_error = f"{type(exc).__name__}: {exc}"
            workers = 0
        if stopped_early:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    end = time.monotonic()
    elapsed_timed = end - t_first if t_first is not None else end - start
    samples_per_s = (
        timed_steps * cfg.batch_size / elapsed_timed
        if t_first is not None and elapsed_timed > 0
        else steps * cfg.batch_size / max(end - start, 1e-9)
    )

    loss_after, acc_after = evaluate(model, x_eval, y_eval, device, precision)
    step_losses = torch.stack(losses).cpu().tolist() if losses else []
    finite = all(math.isfinite(v) for v in step_losses) and math.isfinite(loss_after)
    factor = loss_before / loss_after if loss_after > 0 else math.inf
    problems = []
    if not finite:
        problems.append("the loss became NaN/inf")
    if acc_after < MIN_ACCURACY:
        problems.append(
            f"held-out accuracy {acc_after:.1%} is below {MIN_ACCURACY:.0%} "
            f"(chance {1 / len(CLASSES):.0%})"
        )
    if factor < MIN_LOSS_FACTOR:
        problems.append(f"held-out loss fell only {factor:.2f}x (needs >= {MIN_LOSS_FACTOR:.0f}x)")
    if stopped_early:
        problems.append(
            f"training stopped at its {cfg.time_limit_s:.0f}s limit after {steps} steps"
        )
    return {
        "passed": not problems,
        "problems": problems,
        "device": str(device),
        "precision": precision,
        "grad_scaler": use_scaler,
        "workers": workers,
        "loader_error": loader_error,
        "steps": steps,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "loss_before": round(loss_before, 4),
        "loss_after": round(loss_after, 4),
        "loss_factor": round(factor, 2) if math.isfinite(factor) else None,
        "min_loss_factor": MIN_LOSS_FACTOR,
        "accuracy_before": round(acc_before, 4),
        "accuracy": round(acc_after, 4),
        "min_accuracy": MIN_ACCURACY,
        "chance": 1 / len(CLASSES),
        "first_step_losses": [round(v, 4) for v in step_losses[:3]],
        "last_step_losses": [round(v, 4) for v in step_losses[-3:]],
        "samples_per_s": round(samples_per_s, 1),
        "seconds": round(end - start, 3),
        "config": asdict(cfg),
    }
