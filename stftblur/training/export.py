"""Writing decoder outputs as PNG files: grids and one file per image."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from stftblur._io import PathLike, atomic_write


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Map raw outputs to 8-bit pixels: ``round(clamp(x, 0, 1) * 255)``, shape (B, H, W[, C]).

    This is how every PNG of this project is made from a decoder output. The authors' code
    passes prior samples through a sigmoid before plotting instead, although the models were
    trained and evaluated on the unsquashed output; clamping shows what was evaluated.

    Examples:
        >>> import torch
        >>> to_uint8(torch.tensor([[[[-0.5, 0.5, 1.7]]]]))
        array([[[  0, 128, 255]]], dtype=uint8)
    """
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    x = (images.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu()
    x = x.permute(0, 2, 3, 1).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.5) -> torch.Tensor:
    """Tile (B, C, H, W) images into one (C, H', W') image, ``nrow`` images per row.

    Examples:
        >>> import torch
        >>> make_grid(torch.zeros(10, 1, 28, 28), nrow=5).shape
        torch.Size([1, 62, 152])
    """
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (B, C, H, W) with B >= 1, got {tuple(images.shape)}")
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    b, c, h, w = images.shape
    ncol = min(nrow, b)
    rows = math.ceil(b / ncol)
    grid = images.new_full((c, rows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for i in range(b):
        r, q = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, y : y + h, x : x + w] = images[i]
    return grid


def save_png(image: torch.Tensor, path: PathLike) -> Path:
    """Save one (C, H, W) or (H, W) image of raw values as an 8-bit PNG (see :func:`to_uint8`).

    Examples:
        >>> import torch, tempfile, pathlib
        >>> p = save_png(torch.rand(1, 28, 28), pathlib.Path(tempfile.mkdtemp()) / "x.png")
        >>> p.suffix
        '.png'
    """
    from PIL import Image

    if image.dim() == 2:
        image = image[None]
    pixels = to_uint8(image[None])[0]
    path = Path(path)
    atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))
    return path


def save_grid(images: torch.Tensor, path: PathLike, nrow: int = 8) -> Path:
    """Save (B, C, H, W) raw outputs as one PNG grid (clamped, see :func:`to_uint8`).

    Examples:
        >>> import torch, tempfile, pathlib
        >>> save_grid(torch.rand(4, 1, 28, 28), pathlib.Path(tempfile.mkdtemp()) / "g.png").name
        'g.png'
    """
    return save_png(make_grid(images, nrow), path)


def save_images(
    images: torch.Tensor, directory: PathLike, names: Optional[Sequence[str]] = None, prefix: str = "img"
) -> list:
    """Save every image of a (B, C, H, W) batch as its own PNG in ``directory``.

    File names are ``names`` (``.png`` appended when missing) or ``{prefix}-{i:05d}.png``.

    Returns:
        The written paths.

    Examples:
        >>> import torch, tempfile
        >>> [p.name for p in save_images(torch.rand(2, 1, 8, 8), tempfile.mkdtemp(), prefix="s")]
        ['s-00000.png', 's-00001.png']
    """
    from PIL import Image

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if names is not None and len(names) != images.shape[0]:
        raise ValueError(f"names has {len(names)} entries for {images.shape[0]} images")
    pixels = to_uint8(images)
    paths = []
    for i, arr in enumerate(pixels):
        name = names[i] if names is not None else f"{prefix}-{i:05d}"
        path = directory / (name if name.endswith(".png") else name + ".png")
        Image.fromarray(arr).save(path, format="PNG")
        paths.append(path)
    return paths
