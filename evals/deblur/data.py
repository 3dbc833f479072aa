"""Photographs, degradations and the held-out test set of the deblurring benchmark.

Convention: grayscale images in [0, 1], shape (B, 1, H, W), quantised to 8 bits so that a PNG
written and read back is exactly the tensor. RGB photographs are converted with
``skimage.color.rgb2gray`` (BT.709 luma). A degraded image is
``quantise(clip(gaussian_blur(x, sigma) + noise_std * N(0, 1)))`` with kornia's
``gaussian_blur2d`` (reflect borders), ``sigma`` uniform in ``sigma_range`` per image.
Nothing is downloaded: the photographs ship with scikit-image.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

#: Photographs of ``skimage.data`` used for training crops.
TRAIN_PHOTOS: Tuple[str, ...] = (
    "astronaut", "brick", "chelsea", "coffee", "grass", "gravel",
    "immunohistochemistry", "moon", "page", "rocket",
)
#: Photographs held out for testing; never seen in training.
TEST_PHOTOS: Tuple[str, ...] = ("camera", "clock", "coins", "text")


@dataclasses.dataclass(frozen=True)
class Degradation:
    """Gaussian blur with sigma uniform in ``sigma_range`` plus Gaussian noise of ``noise_std``."""

    sigma_range: Tuple[float, float] = (1.0, 2.0)
    noise_std: float = 0.01

    @property
    def kernel_size(self) -> int:
        """2 * ceil(3 * max sigma) + 1."""
        return 2 * math.ceil(3 * self.sigma_range[1]) + 1


@dataclasses.dataclass(frozen=True)
class Downscale:
    """x``scale`` super-resolution input: antialiased bicubic downsampling, then 8 bits, no noise.

    ``torch.nn.functional.interpolate(mode="bicubic", antialias=True)``, the same resampling as
    PIL's ``Image.resize(..., BICUBIC)`` (a support of 2 pixels widened by the scale factor).
    """

    scale: int = 2

    def describe(self) -> Dict[str, object]:
        return {"task": f"sr{self.scale}", "downsampling": "bicubic, antialias", "scale": self.scale}


def bicubic_down(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic downsampling by an integer ``scale`` (no quantisation)."""
    return F.interpolate(x, scale_factor=1.0 / scale, mode="bicubic", antialias=True, align_corners=False)


def bicubic_up(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling by an integer ``scale``: the classical baseline (no clipping)."""
    return F.interpolate(x, scale_factor=float(scale), mode="bicubic", align_corners=False)


def load_photo(name: str) -> torch.Tensor:
    """A photograph of ``skimage.data`` as float32 (1, H, W) in [0, 1], 8-bit exact."""
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    arr = getattr(skimage.data, name)()
    if isinstance(arr, tuple):
        arr = arr[0]
    arr = img_as_float(arr)
    if arr.ndim == 3:
        arr = rgb2gray(arr[..., :3])
    return quantize(torch.from_numpy(arr.astype(np.float32))[None])


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to multiples of 1/255."""
    return (x.clamp(0.0, 1.0) * 255.0).round() / 255.0


def degrade(sharp: torch.Tensor, deg: "Degradation | Downscale",
            generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(degraded images, per-image sigma), every random draw from ``generator``.

    A :class:`Downscale` gives the low-resolution inputs (``scale`` times smaller) and sigma 0;
    it draws nothing from ``generator``.
    """
    if isinstance(deg, Downscale):
        return quantize(bicubic_down(sharp, deg.scale)), torch.zeros(sharp.shape[0])
    import kornia

    b = sharp.shape[0]
    lo, hi = deg.sigma_range
    sigma = lo + (hi - lo) * torch.rand(b, generator=generator)
    noise = torch.randn(sharp.shape, generator=generator)
    k = deg.kernel_size
    blurred = kornia.filters.gaussian_blur2d(sharp, (k, k), sigma.view(b, 1).expand(b, 2).contiguous(), border_type="reflect")
    return quantize(blurred + deg.noise_std * noise), sigma


def random_crops(photo: torch.Tensor, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` crops of ``size`` x ``size`` of a (1, H, W) photograph."""
    _, h, w = photo.shape
    ys = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
    xs = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    return torch.stack([photo[:, y:y + size, x:x + size] for y, x in zip(ys, xs)])


@dataclasses.dataclass
class TestSet:
    """Held-out sharp crops, their degraded versions, names and blur sigmas."""

    names: List[str]
    sharp: torch.Tensor
    blurry: torch.Tensor
    sigma: List[float]


def make_test_set(photos: Sequence[str] = TEST_PHOTOS, crops_per_photo: int = 12, size: int = 96,
                  deg: "Degradation | Downscale" = Degradation(), seed: int = 1234) -> TestSet:
    """Fixed crops of the test photographs, degraded; independent of any training seed."""
    g = torch.Generator().manual_seed(seed)
    names: List[str] = []
    crops = []
    for p in photos:
        crops.append(random_crops(load_photo(p), crops_per_photo, size, g))
        names += [f"{p}_{k}" for k in range(crops_per_photo)]
    sharp = torch.cat(crops)
    blurry, sigma = degrade(sharp, deg, g)
    return TestSet(names, sharp, blurry, sigma.tolist())


class TrainSampler:
    """Random (degraded, sharp) training batches: a photograph, a crop, flips, a degradation.

    Every draw comes from one generator seeded with ``seed``, so a run is reproducible.
    """

    def __init__(self, seed: int, crop_size: int = 48, batch_size: int = 16,
                 photos: Sequence[str] = TRAIN_PHOTOS, deg: "Degradation | Downscale" = Degradation()) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.photos = [load_photo(p) for p in photos]
        self.crop_size, self.batch_size, self.deg = crop_size, batch_size, deg

    def sharp(self, n: int) -> torch.Tensor:
        idx = torch.randint(0, len(self.photos), (n,), generator=self.g).tolist()
        out = torch.cat([random_crops(self.photos[i], 1, self.crop_size, self.g) for i in idx])
        flip = torch.rand(n, 2, generator=self.g) < 0.5
        out = torch.where(flip[:, 0, None, None, None], out.flip(-1), out)
        return torch.where(flip[:, 1, None, None, None], out.flip(-2), out)

    def sample(self, n: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        sharp = self.sharp(n or self.batch_size)
        return degrade(sharp, self.deg, self.g)[0], sharp

    def describe(self) -> Dict[str, object]:
        if isinstance(self.deg, Downscale):
            return {"crop_size": self.crop_size, "batch_size": self.batch_size, **self.deg.describe()}
        return {"crop_size": self.crop_size, "batch_size": self.batch_size, "sigma_range": list(self.deg.sigma_range),
                "noise_std": self.deg.noise_std}
