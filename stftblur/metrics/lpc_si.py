"""No-reference sharpness: the local phase coherence sharpness index (LPC-SI).

R. Hassen, Z. Wang and M. M. A. Salama, "Image Sharpness Assessment Based on Local Phase
Coherence", IEEE Transactions on Image Processing 22(7), 2013. Written in PyTorch from the
published definition and validated against values computed by the authors' reference MATLAB
implementation (``lpc_si.m``, with Peter Kovesi's log-Gabor filter bank), which it matches number
for number; no part of that MATLAB code is in this project. See ``docs/metrics.md`` (accuracy,
provenance).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from stftblur._checks import check_image, check_positive_float, check_positive_int
from stftblur.errors import require_extra
from stftblur.metrics._lpc_map import LUMA_WEIGHTS, lpc_si_op  # noqa: F401 (LUMA_WEIGHTS re-exported)

__all__ = ["lpc_si", "LPCSI", "blur_effect"]

ScalesSpec = Union[Sequence[float], Tuple[float, ...]]


def _matlab_round(x: float) -> int:
    """Round half away from zero, as MATLAB's ``round`` does (Python rounds half to even)."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def default_border(height: int, width: int) -> int:
    """The reference border ``round(min(H, W) / 16)`` (MATLAB rounding: halves away from zero).

    Convention:
        Pixels left out on every side of an image of size (``height``, ``width``) when
        ``border=None``; halves round up as MATLAB's ``round`` does (40 -> 2.5 -> 3), not to
        even as Python's ``round`` would.

    Examples:
        >>> default_border(512, 512), default_border(28, 28), default_border(40, 64)
        (32, 2, 3)
    """
    return _matlab_round(min(height, width) / 16.0)


@dataclasses.dataclass(frozen=True)
class LPCSISettings:
    """Validated LPC-SI parameters (see :func:`lpc_si`); ``border=None`` means the default.

    Convention:
        Build it with :meth:`create`, which checks every argument; the fields are those of
        :func:`lpc_si` (data range of the input, scales, weights, C, beta_k, orientations,
        border), normalised to floats and tuples so that equal settings compare equal.

    Examples:
        >>> s = LPCSISettings.create(scales=[1, 2, 4])
        >>> s.scales, s.border_for(64, 48)
        ((1.0, 2.0, 4.0), 3)
    """

    data_range: float = 1.0
    scales: Tuple[float, ...] = (1.0, 1.5, 2.0)
    scale_weights: Tuple[float, ...] = (1.0, -3.0, 2.0)
    C: float = 2.0
    beta_k: float = 1e-4
    n_orientations: int = 8
    border: Optional[int] = None

    @classmethod
    def create(
        cls,
        data_range: float = 1.0,
        scales: ScalesSpec = (1, 1.5, 2),
        scale_weights: ScalesSpec = (1, -3, 2),
        C: float = 2.0,
        beta_k: float = 1e-4,
        n_orientations: int = 8,
        border: Optional[int] = None,
    ) -> "LPCSISettings":
        """Validate every argument, raising an error that names the bad one.

        Convention:
            The arguments and defaults of :func:`lpc_si`; ``border`` is checked against the
            image size later, by :meth:`border_for`.

        Examples:
            >>> LPCSISettings.create(data_range=255).data_range
            255.0
        """
        scales_t = _as_float_tuple(scales, "scales")
        weights_t = _as_float_tuple(scale_weights, "scale_weights")
        if any(s <= 0 for s in scales_t):
            raise ValueError(f"scales must all be > 0, got {scales_t}")
        if len(weights_t) != len(scales_t):
            raise ValueError(
                f"scale_weights must have one weight per scale ({len(scales_t)}), got {len(weights_t)}: {weights_t}"
            )
        if border is not None and (isinstance(border, bool) or not isinstance(border, int) or border < 0):
            raise ValueError(f"border must be None or an int >= 0, got {border!r}")
        return cls(
            data_range=check_positive_float(data_range, "data_range"),
            scales=scales_t,
            scale_weights=weights_t,
            C=check_positive_float(C, "C"),
            beta_k=check_positive_float(beta_k, "beta_k"),
            n_orientations=check_positive_int(n_orientations, "n_orientations"),
            border=border,
        )

    def border_for(self, height: int, width: int) -> int:
        """The border used for an image of this size; an error if it leaves no pixel inside.

        Convention:
            ``border`` if set, else :func:`default_border`; it must leave at least one pixel,
            i.e. ``2 * border < min(height, width)``.

        Examples:
            >>> LPCSISettings.create().border_for(28, 28)
            2
        """
        border = default_border(height, width) if self.border is None else self.border
        if 2 * border >= min(height, width):
            raise ValueError(f"border={border} leaves no pixel inside an image of spatial size {(height, width)}")
        return border

    def as_dict(self) -> Dict[str, Any]:
        """Every setting, JSON-ready (``border`` None means ``round(min(H, W) / 16)``).

        Convention:
            Tuples become lists; the keys are the field names.

        Examples:
            >>> LPCSISettings.create().as_dict()["scale_weights"]
            [1.0, -3.0, 2.0]
        """
        d = dataclasses.asdict(self)
        d["scales"], d["scale_weights"] = list(self.scales), list(self.scale_weights)
        return d


def _check_images(images: object) -> torch.Tensor:
    x = check_image(images, "images")
    if x.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have 1 (gray) or 3 (RGB) channels, got {x.shape[1]} channels in shape {tuple(x.shape)}"
        )
    return x


def _as_float_tuple(values: object, name: str) -> Tuple[float, ...]:
    if isinstance(values, (torch.Tensor, np.ndarray)):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
        raise TypeError(f"{name} must be a non-empty sequence of numbers, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{name} must contain finite numbers, got {values!r}")
        out.append(float(v))
    return tuple(out)


def lpc_si(
    images: torch.Tensor,
    data_range: float = 1.0,
    scales: ScalesSpec = (1, 1.5, 2),
    scale_weights: ScalesSpec = (1, -3, 2),
    C: float = 2.0,
    beta_k: float = 1e-4,
    n_orientations: int = 8,
    border: Optional[int] = None,
    return_map: bool = False,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    r"""Local phase coherence sharpness index (LPC-SI) of every image in a batch.

    Hassen, Wang and Salama (IEEE TIP 22(7), 2013). A bank of complex log-Gabor filters (three
    scales, ``n_orientations`` orientations) measures, at each pixel and orientation, how
    coherent the phases of the three scales are: sharp edges and lines give
    :math:`\cos(\sum_s w_s \phi_s) \approx 1`, blur destroys that coherence. The coherence of the
    orientations is averaged with the finest-scale energy :math:`E_o` above a threshold,

    .. math:: \mathrm{LPC}(x) = \frac{\sum_o \max(0, \cos(\sum_s w_s \phi_{s,o}(x))) E_o(x)}
              {\sum_o E_o(x) + C},

    and the index is the mean of the sorted map :math:`L_{(1)} \ge L_{(2)} \ge \dots` with
    weights :math:`u_i = e^{-(i-1)/((N-1)\beta_k)}` that favour the sharpest pixels.

    Convention:
        ``images`` hold values in [0, ``data_range``]; the index is defined on 0..255 gray
        levels (``C`` and the energy are in those units), so the images are scaled by
        ``255 / data_range``. Colour (3 channels) is converted to luma with the ITU-R BT.601
        weights (0.299, 0.587, 0.114) before scaling, without rounding to integers. There is
        no spatial window: the filters are applied to the whole image through the FFT
        (periodic boundary), exactly as the reference MATLAB code does. The filter bank is
        Kovesi's (smallest wavelength 4, ``sigma_on_f`` 0.75, angular spread
        :math:`\pi / n_o / 1.5`, low-pass radius 0.45 of order 15, zero DC, odd and even
        sizes gridded as in his code). ``border`` pixels on every side (default
        ``round(min(H, W) / 16)``, MATLAB rounding) are left out of the energy threshold
        (mean + 2 sample standard deviations of the finest-scale magnitude) and of the final
        index; the map itself covers the whole image. A flat image has no energy and gives 0.
        Only the largest values of the map carry weight above :math:`10^{-18}`, so a partial
        sort replaces the full sort; the result equals the reference to float64 rounding.
        float16/bfloat16 are computed in float32. Not differentiable (a measurement, not a
        loss). The computation is one PyTorch custom operator (``torch.ops.stftblur.lpc_si``),
        so a step compiled with ``torch.compile`` (also ``fullgraph=True``) calls the same
        code as eager mode.

    Args:
        images: images of shape (B, 1, H, W) or (B, 3, H, W), any H and W.
        data_range: the value of white (1.0 for [0, 1] images, 255.0 for 0..255).
        scales: wavelength multipliers of the three (or more) filter scales.
        scale_weights: the weight :math:`w_s` of each scale's phase.
        C: the constant that keeps weak-energy pixels low, in 0..255 units.
        beta_k: decay of the rank weights (smaller favours the sharpest pixels more).
        n_orientations: number of filter orientations.
        border: pixels excluded on every side, or None for ``round(min(H, W) / 16)``.
        return_map: also return the LPC map.

    Returns:
        The index, shape (B,), in [0, 1] (1 is sharp); with ``return_map=True`` also the map,
        shape (B, H, W). Computation dtype (float32, or float64 for float64 input).

    Examples:
        >>> import torch
        >>> x = torch.zeros(1, 1, 64, 64)
        >>> x[..., 16:48, 16:48] = 1.0  # a sharp square
        >>> sharp = lpc_si(x)
        >>> blurred = lpc_si(torch.nn.functional.avg_pool2d(x, 5, 1, 2))
        >>> bool(sharp > blurred)
        True
        >>> lpc_si(torch.full((2, 3, 20, 30), 0.5))
        tensor([0., 0.])
        >>> si, lpc = lpc_si(x, return_map=True)
        >>> lpc.shape
        torch.Size([1, 64, 64])
    """
    settings = LPCSISettings.create(data_range, scales, scale_weights, C, beta_k, n_orientations, border)
    return _lpc_si(_check_images(images), settings, return_map)


def _lpc_si(
    x: torch.Tensor, settings: LPCSISettings, return_map: bool
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """:func:`lpc_si` on checked images with validated settings (one custom operator, which
    ``torch.compile`` calls as eager mode does)."""
    h, w = x.shape[-2:]
    si, maps = lpc_si_op(
        x.detach(), settings.data_range, list(settings.scales), list(settings.scale_weights), settings.C,
        settings.beta_k, settings.n_orientations, settings.border_for(h, w),
    )
    if return_map:
        return si, maps
    return si


class LPCSI:
    """LPC-SI accumulated over batches: :meth:`update` with each batch, :meth:`compute` the mean.

    Convention:
        The same as :func:`lpc_si` (images in [0, ``data_range``], scaled to 0..255 gray
        levels; BT.601 luma for colour; no window, FFT over the whole image; ``border`` pixels
        left out, ``round(min(H, W) / 16)`` by default). Images of different sizes may be
        passed in different batches. The per-image values are kept (one float64 each, on the
        CPU), so :meth:`compute` is the exact mean over every image seen since the last
        :meth:`reset`, whatever the batch sizes, and :attr:`values` gives them all.

    Args:
        data_range: the value of white (1.0 for [0, 1] images).
        **kwargs: the other keyword arguments of :func:`lpc_si` (``scales``, ``scale_weights``,
            ``C``, ``beta_k``, ``n_orientations``, ``border``).

    Examples:
        >>> import torch
        >>> metric = LPCSI()
        >>> _ = metric.update(torch.full((2, 1, 32, 32), 0.5))
        >>> _ = metric.update(torch.full((1, 3, 24, 40), 0.2))
        >>> metric.count, metric.compute()
        (3, tensor(0., dtype=torch.float64))
        >>> metric.reset(); metric.count
        0
    """

    def __init__(self, data_range: float = 1.0, **kwargs: Any) -> None:
        unknown = set(kwargs) - {f.name for f in dataclasses.fields(LPCSISettings)}
        if unknown:
            raise TypeError(f"LPCSI got unexpected keyword arguments {sorted(unknown)}")
        self.settings = LPCSISettings.create(data_range=data_range, **kwargs)
        self._values: List[torch.Tensor] = []

    def update(self, images: torch.Tensor) -> torch.Tensor:
        """Add a batch (B, C, H, W); returns its per-image values, shape (B,)."""
        values = _lpc_si(_check_images(images), self.settings, False)
        assert isinstance(values, torch.Tensor)
        self._values.append(values.detach().to("cpu", torch.float64))
        return values

    @property
    def values(self) -> torch.Tensor:
        """Every per-image value seen so far, in order, shape (N,), float64."""
        return torch.cat(self._values) if self._values else torch.zeros(0, dtype=torch.float64)

    @property
    def count(self) -> int:
        """Number of images seen so far."""
        return sum(v.numel() for v in self._values)

    def compute(self) -> torch.Tensor:
        """The mean LPC-SI over every image seen; an error before the first :meth:`update`."""
        if not self._values:
            raise RuntimeError("LPCSI.compute() called before any update()")
        return self.values.mean()

    def reset(self) -> None:
        """Forget every image seen."""
        self._values = []

    def __repr__(self) -> str:
        return f"LPCSI({self.settings}, count={self.count})"


def blur_effect(images: torch.Tensor, data_range: float = 1.0, h_size: int = 11) -> torch.Tensor:
    """The blur effect of Crete-Roffet et al. (2007) per image, through scikit-image.

    A thin wrapper of :func:`skimage.measure.blur_effect` for batches: 0 is sharp, 1 is
    blurred (the opposite direction to :func:`lpc_si`). It compares the gradients of the image
    with those of a copy blurred by an ``h_size`` box filter, along each axis, and keeps the
    worse axis. Needs scikit-image, the ``skimage`` extra (``pip install 'stftblur[skimage]'``).

    Convention:
        ``images`` in [0, ``data_range``] are divided by ``data_range`` and handed to
        scikit-image as float64 on the CPU, one image at a time. Colour (3 channels) is
        converted by scikit-image's own ``rgb2gray`` (ITU-R BT.709 weights 0.2125, 0.7154,
        0.0721, not the BT.601 weights of :func:`lpc_si`) so that the values are exactly
        scikit-image's. The window is the 1-D box filter of ``h_size`` taps; the two pixels
        nearest each edge are left out, as scikit-image does. Not differentiable.

    Args:
        images: images of shape (B, 1, H, W) or (B, 3, H, W).
        data_range: the value of white.
        h_size: size of the re-blurring box filter.

    Returns:
        Blur effect, shape (B,), float64, on the device of ``images``.

    Examples:
        >>> import torch
        >>> x = torch.zeros(1, 1, 32, 32)
        >>> x[..., 8:24, 8:24] = 1.0
        >>> bool(blur_effect(x) < blur_effect(torch.nn.functional.avg_pool2d(x, 5, 1, 2)))
        True
    """
    _skimage_blur_effect = require_extra("skimage.measure", "skimage", "blur_effect").blur_effect

    x = _check_images(images)
    data_range = check_positive_float(data_range, "data_range")
    h_size = check_positive_int(h_size, "h_size")
    arrays = (x.detach().to("cpu", torch.float64) / data_range).numpy()
    values = [
        _skimage_blur_effect(a[0] if a.shape[0] == 1 else a, h_size=h_size, channel_axis=None if a.shape[0] == 1 else 0)
        for a in arrays
    ]
    return torch.tensor(np.asarray(values, dtype=np.float64), device=x.device)
