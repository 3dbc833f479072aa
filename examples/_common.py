"""Shared by the examples: a tiny deblurring model and synthetic data (nothing is downloaded)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pick_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


class TinyDeblur(nn.Module):
    """Three 3x3 convolutions predicting a residual: ``x + f(x)``."""

    def __init__(self, channels: int = 1, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def make_batch(batch: int, size: int, channels: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(blurry, sharp): random blocky images in [0, 1] and a 3x3 box blur of them."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channels, size // 4, size // 4, generator=g)
    sharp = F.interpolate(coarse, size=(size, size), mode="nearest")
    blurry = F.avg_pool2d(F.pad(sharp, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return blurry, sharp
