"""The metric registry: name -> function, whether it needs a reference, its settings.

Everything that evaluates images by metric name (``stftblur eval`` through
:mod:`stftblur.evaluation`, the VAE evaluation, the benchmarks) looks the metric up here, so
adding a metric is one :func:`register_metric` call (or one entry below).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch

from stftblur.metrics.fidelity import psnr, ssim
from stftblur.metrics.lpc_si import LUMA_WEIGHTS, LPCSISettings, _lpc_si, blur_effect

__all__ = ["METRICS", "Metric", "get_metric", "register_metric"]

MetricFn = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric as the evaluation engine computes it.

    Convention:
        ``fn(images, references)`` takes float (B, C, H, W) images in [0, 1] (``data_range``
        1) and, when ``needs_reference``, references of the same shape (else None), and
        returns one value per image, shape (B,). Images smaller than ``min_size`` on either
        side get an error instead of a value. ``settings`` are the exact settings, written to
        the JSON report of ``stftblur eval``; ``higher_is_better`` says which way is better.

    Examples:
        >>> import torch
        >>> m = get_metric("psnr")
        >>> m.needs_reference, round(m.fn(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.1)).item(), 4)
        (True, 20.0)
    """

    name: str
    fn: MetricFn
    needs_reference: bool
    settings: Mapping[str, Any]
    higher_is_better: bool = True
    min_size: Optional[int] = None
    description: str = ""

    def too_small(self, height: int, width: int) -> Optional[str]:
        """Why an image of this size gets no value, or None.

        Examples:
            >>> get_metric("ssim").too_small(8, 32)
            'ssim needs at least 11x11 pixels, image is 8x32'
        """
        if self.min_size is not None and min(height, width) < self.min_size:
            return f"{self.name} needs at least {self.min_size}x{self.min_size} pixels, image is {height}x{width}"
        return None


_REGISTRY: Dict[str, Metric] = {}
#: The registered metrics by name, in registration order (a read-only view).
METRICS: Mapping[str, Metric] = types.MappingProxyType(_REGISTRY)


def register_metric(metric: Metric, *, replace: bool = False) -> Metric:
    """Add ``metric`` to :data:`METRICS`; an existing name is an error unless ``replace``.

    Examples:
        >>> import torch
        >>> m = register_metric(Metric("mean_level", lambda x, ref: x.mean((1, 2, 3)), False, {}))
        >>> sorted(METRICS)[:2]
        ['blur_effect', 'lpc_si']
        >>> _ = _REGISTRY.pop("mean_level")
    """
    if not isinstance(metric, Metric):
        raise TypeError(f"metric must be a Metric, got {type(metric).__name__}")
    if metric.name in _REGISTRY and not replace:
        raise ValueError(f"a metric named {metric.name!r} is already registered")
    _REGISTRY[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    """The registered metric called ``name``; :class:`ValueError` lists the known names.

    Examples:
        >>> get_metric("lpc_si").needs_reference
        False
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(_REGISTRY)}") from None


def metric_names(needs_reference: Optional[bool] = None) -> Tuple[str, ...]:
    """The registered names, optionally only those that need (or do not need) a reference."""
    return tuple(n for n, m in _REGISTRY.items() if needs_reference is None or m.needs_reference == needs_reference)


# --------------------------------------------------------------------------- the metrics

#: LPC-SI as evaluated: default settings for images in [0, 1].
LPC_SI_SETTINGS = LPCSISettings.create(data_range=1.0)
BLUR_EFFECT_H_SIZE = 11
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5

register_metric(Metric(
    "lpc_si",
    lambda x, ref: _lpc_si(x, LPC_SI_SETTINGS, False),  # type: ignore[arg-type,return-value]
    needs_reference=False,
    settings=types.MappingProxyType({
        **LPC_SI_SETTINGS.as_dict(),
        "border_rule": "round(min(H, W) / 16) when border is None",
        "luma": list(LUMA_WEIGHTS),
    }),
    description="local phase coherence sharpness index (stftblur.metrics.lpc_si), 1 is sharp",
))
register_metric(Metric(
    "blur_effect",
    lambda x, ref: blur_effect(x, h_size=BLUR_EFFECT_H_SIZE),
    needs_reference=False,
    settings=types.MappingProxyType({"h_size": BLUR_EFFECT_H_SIZE, "luma": "skimage rgb2gray (0.2125, 0.7154, 0.0721)"}),
    higher_is_better=False,
    description="blur effect of Crete et al. (stftblur.metrics.blur_effect), 1 is blurred",
))
register_metric(Metric(
    "psnr",
    lambda x, ref: psnr(x, ref),  # type: ignore[arg-type]
    needs_reference=True,
    settings=types.MappingProxyType({"data_range": 1.0, "over": "all channels and pixels"}),
    description="peak signal-to-noise ratio in dB (stftblur.metrics.psnr)",
))
register_metric(Metric(
    "ssim",
    lambda x, ref: ssim(x, ref, window_size=SSIM_WINDOW, sigma=SSIM_SIGMA),  # type: ignore[arg-type]
    needs_reference=True,
    settings=types.MappingProxyType({
        "data_range": 1.0,
        "window": "gaussian",
        "window_size": SSIM_WINDOW,
        "sigma": SSIM_SIGMA,
        "padding": "valid",
        "covariance": "population",
        "channels": "mean over channels",
    }),
    min_size=SSIM_WINDOW,
    description="structural similarity (stftblur.metrics.ssim; Gaussian 11x11, sigma 1.5, valid)",
))
