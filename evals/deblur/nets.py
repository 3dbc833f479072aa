"""Restoration networks of the deblurring benchmark; both predict a residual, zero at the start."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn


class PlainCNN(nn.Module):
    """``x + f(x)``: ``depth`` 3x3 convolutions of ``width`` channels with ReLU between them.

    The last convolution is initialised to zero, so the untrained network is the identity.
    """

    def __init__(self, depth: int = 6, width: int = 32, channels: int = 1) -> None:
        super().__init__()
        layers: List[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1)]
        for _ in range(depth - 2):
            layers += [nn.ReLU(inplace=True), nn.Conv2d(width, width, 3, padding=1)]
        layers += [nn.ReLU(inplace=True), nn.Conv2d(width, channels, 3, padding=1)]
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TimmUNet(nn.Module):
    """A timm encoder (``features_only``, random init, nothing downloaded) and a light decoder.

    The decoder upsamples the deepest feature map through every shallower one and the input
    (bilinear, concatenate, conv-BN-ReLU) to a zero-initialised 3x3 head: ``x + head(...)``.
    """

    def __init__(self, encoder: str = "mobilenetv3_small_100", channels: int = 1, width: int = 32) -> None:
        super().__init__()
        import timm

        self.encoder = timm.create_model(encoder, features_only=True, pretrained=False, in_chans=channels)
        chans: List[int] = list(self.encoder.feature_info.channels())
        widths = [width * 2 if i >= len(chans) - 2 else width for i in range(len(chans))]
        self.project = nn.Conv2d(chans[-1], widths[-1], 1)
        blocks, prev = [], widths[-1]
        for i in range(len(chans) - 2, -1, -1):
            blocks.append(_ConvBlock(prev + chans[i], widths[i]))
            prev = widths[i]
        self.blocks = nn.ModuleList(blocks)
        self.final = _ConvBlock(prev + channels, width)
        self.head = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder((x - 0.5) / 0.25)
        y = self.project(feats[-1])
        for block, skip in zip(self.blocks, reversed(feats[:-1])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], 1))
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x + self.head(self.final(torch.cat([y, x], 1)))


class UpsampleCNN(nn.Module):
    """x``scale`` super-resolution: ``bicubic(x) + pixel_shuffle(f(x))`` (ESPCN-style body).

    ``f`` is ``depth`` 3x3 convolutions of ``width`` channels with LeakyReLU (slope 0.1) between
    them, at the low resolution, ending in ``scale**2`` channels per output channel that a pixel
    shuffle puts on the high-resolution grid. The last convolution is initialised to zero, so the
    untrained network is bicubic upsampling. (With plain ReLU, every unit died within the first
    hundred steps of L1 training, Adam lr 1e-3, and the network stayed at bicubic: measured on
    the first pilot run, test PSNR equal to bicubic's to 1e-4 dB.)
    """

    def __init__(self, scale: int = 2, depth: int = 8, width: int = 48, channels: int = 1) -> None:
        super().__init__()
        self.scale = scale
        layers: List[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1)]
        for _ in range(depth - 2):
            layers += [nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(width, width, 3, padding=1)]
        layers += [nn.LeakyReLU(0.1, inplace=True), nn.Conv2d(width, channels * scale * scale, 3, padding=1)]
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=float(self.scale), mode="bicubic", align_corners=False)
        return up + F.pixel_shuffle(self.body(x), self.scale)


def make_net(name: str) -> nn.Module:
    """``"cnn"`` (PlainCNN), ``"timm:<encoder>"`` (TimmUNet) or ``"sr<k>-cnn"`` (UpsampleCNN, x k)."""
    if name == "cnn":
        return PlainCNN()
    if name.startswith("sr") and name.endswith("-cnn") and name[2:-4].isdigit():
        return UpsampleCNN(scale=int(name[2:-4]))
    if name.startswith("timm:"):
        return TimmUNet(name.split(":", 1)[1])
    raise ValueError(f"model must be 'cnn', 'sr<scale>-cnn' or 'timm:<encoder name>', got {name!r}")
