"""BasicSR adapter: ``LocalPhaseLoss`` in ``LOSS_REGISTRY``, ``calculate_lpcsi`` in ``METRIC_REGISTRY``.

Import the module before BasicSR builds the model (the pattern of Real-ESRGAN's ``train.py``)::

    import stftblur.integrations.basicsr  # noqa: F401  (registers the loss and the metric)
    from basicsr.train import train_pipeline
    train_pipeline(root_path)

and name them in the options YAML::

    train:
      pixel_opt:
        type: LocalPhaseLoss
        loss_weight: 1.0
        reduction: mean
        preset: default        # or paper-text / paper-code; any LocalPhaseConfig option below
        window_size: 16
    val:
      metrics:
        lpcsi:
          type: calculate_lpcsi
          crop_border: 4
          better: higher

Written against BasicSR 1.4.2 (``pip install 'stftblur[basicsr]'`` installs ``basicsr-fixed``,
the same code with its torchvision import fixed). Importing this module again, or reloading it,
is harmless; a ``LocalPhaseLoss`` or ``calculate_lpcsi`` registered by another package is never
replaced: the import raises a :class:`RuntimeError` naming that package's module.
"""

from __future__ import annotations

from typing import Any

from stftblur.integrations._common import (
    WeightedLocalPhaseLoss,
    check_registration,
    lpc_si_of_array,
    require_framework,
    split_lpc_si_options,
)

require_framework("basicsr.utils.registry", "basicsr", "stftblur.integrations.basicsr")

from basicsr.utils.registry import LOSS_REGISTRY, METRIC_REGISTRY  # noqa: E402

__all__ = ["LocalPhaseLoss", "calculate_lpcsi"]

# Arguments BasicSR's validation passes to every metric that a no-reference index does not use.
_IGNORED_METRIC_ARGS = ("img2", "better")


class LocalPhaseLoss(WeightedLocalPhaseLoss):
    """:class:`stftblur.LocalPhaseLoss` as a BasicSR loss (``type: LocalPhaseLoss`` in the YAML).

    Convention:
        BasicSR's: ``loss_weight`` and ``reduction`` (``"none"`` | ``"mean"`` | ``"sum"`` over the
        images), ``forward(pred, target, weight=None, **kwargs)`` with ``pred`` and ``target``
        (B, C, H, W) in [0, 1] as BasicSR's models give them. Every
        :class:`~stftblur.losses.LocalPhaseConfig` option and ``preset`` may be set in the YAML;
        a misspelt option is a :class:`TypeError` naming it. ``1e-4`` (which PyYAML reads as
        text) is read as a number. ``weight`` must hold one weight per image (a per-pixel map,
        which BasicSR's pixel losses take, is refused with an explanation); see
        ``stftblur.integrations._common.WeightedLocalPhaseLoss``.

    Args:
        loss_weight: factor of the loss in the total (1.0).
        reduction: batch reduction (``"mean"``).
        preset: ``"paper-text"``, ``"paper-code"``, ``"default"`` or None (the defaults).
        **options: single :class:`~stftblur.losses.LocalPhaseConfig` options.

    Examples:
        >>> import torch
        >>> from basicsr.losses import build_loss
        >>> loss = build_loss({"type": "LocalPhaseLoss", "loss_weight": 0.5, "window_size": 8})
        >>> x = torch.rand(2, 3, 32, 32)
        >>> loss(x, x).item(), loss.options.window_size
        (0.0, 8)
    """

    framework = "BasicSR"


def calculate_lpcsi(img: Any, crop_border: int = 0, input_order: str = "HWC", test_y_channel: bool = False,
                    **kwargs: Any) -> float:
    """LPC-SI of one image, in BasicSR's metric convention (``type: calculate_lpcsi`` in the YAML).

    Convention:
        ``img`` is what BasicSR's ``tensor2img`` gives: a uint8 numpy array in [0, 255], (H, W, C)
        with C = 3 in BGR order or C = 1, or (H, W) for gray (``input_order="CHW"`` for
        (C, H, W)). ``crop_border`` pixels are cut from every side, then the value is
        :func:`stftblur.metrics.lpc_si` of the image in RGB order with ``data_range=255``,
        computed in float64 (colour becomes BT.601 luma inside LPC-SI).
        ``test_y_channel=True`` measures BasicSR's own Y channel (``to_y_channel``: YCbCr's Y,
        in [16, 235]) as a gray image instead. Higher is sharper (``better: higher``).
        LPC-SI is no-reference: ``img2`` and ``better``, which BasicSR passes to every metric,
        are ignored; the LPC-SI options (``scales``, ``scale_weights``, ``C``, ``beta_k``,
        ``n_orientations``, ``border``) may be set; any other name is a :class:`TypeError`.
        Another dtype or layout is an error naming what was expected.

    Returns:
        The index, a float in [0, 1].

    Examples:
        >>> import numpy as np
        >>> img = np.zeros((64, 64, 3), np.uint8); img[16:48, 16:48] = 255
        >>> round(calculate_lpcsi(img, crop_border=0, img2=img, better="higher"), 4) > 0.5
        True
    """
    options = split_lpc_si_options(kwargs, _IGNORED_METRIC_ARGS, "calculate_lpcsi")
    if not isinstance(test_y_channel, bool):
        raise TypeError(f"test_y_channel must be a bool, got {test_y_channel!r}")
    lpc = dict(layout=input_order, crop_border=crop_border, options=options)
    if test_y_channel:
        # Check the image as given first, so that a wrong dtype or layout is reported as such.
        lpc_si_of_array(img, channel_order="BGR", **lpc)
        from basicsr.metrics.metric_util import reorder_image, to_y_channel

        y = to_y_channel(reorder_image(img, input_order=input_order))  # float, (H, W, 1), [16, 235]
        return lpc_si_of_array(y, layout="HWC", channel_order="BGR", crop_border=crop_border, options=options,
                               uint8_only=False)
    return lpc_si_of_array(img, channel_order="BGR", **lpc)


def _register() -> None:
    for registry, obj in ((LOSS_REGISTRY, LocalPhaseLoss), (METRIC_REGISTRY, calculate_lpcsi)):
        name = obj.__name__
        existing = registry._obj_map.get(name)  # BasicSR's Registry has no public look-up without printing
        check_registration(f"BasicSR's {registry._name} registry", name, existing, obj)
        if existing is None:
            registry.register(obj)
        else:  # an earlier import or reload of this module: point the name at the current object
            registry._obj_map[name] = obj


_register()
