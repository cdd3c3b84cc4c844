"""A synthetic but learnable image task: which way does the line in the noise run?

Four classes (horizontal, vertical, diagonal, anti-diagonal) of short bright strokes at random
positions, lengths and intensities under Gaussian noise. A small CNN must learn local oriented
filters to solve it, a linear model on raw pixels cannot do it well, and chance is 25 %, so
"accuracy well above chance" is a real statement that gradients flowed through convolutions.
Generated from a fixed seed in one vectorised pass, so every run sees the same data.
"""

from __future__ import annotations

import torch

CLASSES = ("horizontal", "vertical", "diagonal", "anti-diagonal")


def make_lines(
    n: int, size: int, seed: int, noise: float = 0.35
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images float32 [n,1,size,size], labels int64 [n]) for the line-orientation task."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(CLASSES), (n,), generator=g)
    half = torch.randint(2, size // 3 + 1, (n,), generator=g)
    margin = half + 1
    cy = (torch.rand(n, generator=g) * (size - 2 * margin) + margin).long()
    cx = (torch.rand(n, generator=g) * (size - 2 * margin) + margin).long()
    intensity = 0.8 + 0.6 * torch.rand(n, generator=g)

    yy = torch.arange(size).view(1, size, 1)
    xx = torch.arange(size).view(1, 1, size)
    dy = yy - cy.view(n, 1, 1)
    dx = xx - cx.view(n, 1, 1)
    h = half.view(n, 1, 1)
    masks = torch.stack(
        [
            (dy == 0) & (dx.abs() <= h),
            (dx == 0) & (dy.abs() <= h),
            (dy == dx) & (dx.abs() <= h),
            (dy == -dx) & (dx.abs() <= h),
        ],
        dim=1,
    )  # [n, 4, size, size]
    mask = masks[torch.arange(n), labels]
    images = mask.float() * intensity.view(n, 1, 1)
    images = images + noise * torch.randn(n, size, size, generator=g)
    return images.unsqueeze(1).contiguous(), labels


class BatchDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Indexable by a *list* of indices, returning a whole batch at once.

    Used with a BatchSampler as the DataLoader's sampler and batch_size=None, workers slice
    ready-made batches instead of collating samples one by one, so the loader keeps up with a
    fast GPU while still crossing process boundaries through shared memory like real loaders.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(index)
        return self.images[idx], self.labels[idx]
