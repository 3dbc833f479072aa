"""mmengine / mmagic adapter: ``LocalPhaseLoss`` in the root ``MODELS``, ``LPCSI`` in the root ``METRICS``.

mmagic's registries (and those of every OpenMMLab 2.x project) have mmengine's root registries
as parents, so one line in a config makes both names available::

    custom_imports = dict(imports=['stftblur.integrations.mmengine'], allow_failed_imports=False)

    model = dict(
        ...,
        pixel_loss=dict(type='LocalPhaseLoss', loss_weight=0.01, reduction='mean', preset='default'),
    )
    val_evaluator = [dict(type='PSNR'), dict(type='LPCSI', crop_border=4)]

Written against mmengine 0.10 (``pip install 'stftblur[mmengine]'``). Importing this module again,
or reloading it, is harmless; an entry of the same name registered by another package is never
replaced: the import raises a :class:`RuntimeError` naming that package's module.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from stftblur.integrations._common import (
    WeightedLocalPhaseLoss,
    check_registration,
    lpc_si_of_array,
    require_framework,
    split_lpc_si_options,
)

require_framework("mmengine.registry", "mmengine", "stftblur.integrations.mmengine")

from mmengine.evaluator import BaseMetric  # noqa: E402
from mmengine.registry import METRICS, MODELS  # noqa: E402

__all__ = ["LocalPhaseLoss", "LPCSI"]


class LocalPhaseLoss(WeightedLocalPhaseLoss):
    """:class:`stftblur.LocalPhaseLoss` as an mmengine/mmagic loss (``type='LocalPhaseLoss'``).

    Convention:
        mmagic's pixel-loss convention: ``loss_weight``, ``reduction`` (``"none"`` | ``"mean"`` |
        ``"sum"`` over the images), ``forward(pred, target, weight=None, **kwargs)`` with
        (B, C, H, W) images. Every :class:`~stftblur.losses.LocalPhaseConfig` option and
        ``preset`` may be set in the config; a misspelt option is a :class:`TypeError` naming
        it. ``weight`` must hold one weight per image (a per-pixel map is refused with an
        explanation); see ``stftblur.integrations._common.WeightedLocalPhaseLoss``.

    Args:
        loss_weight: factor of the loss in the total (1.0).
        reduction: batch reduction (``"mean"``).
        preset: ``"paper-text"``, ``"paper-code"``, ``"default"`` or None (the defaults).
        **options: single :class:`~stftblur.losses.LocalPhaseConfig` options.

    Examples:
        >>> import torch
        >>> from mmengine.registry import MODELS
        >>> loss = MODELS.build(dict(type="LocalPhaseLoss", loss_weight=0.5, preset="paper-code"))
        >>> x = torch.rand(2, 1, 32, 32)
        >>> loss(x, x).item(), loss.options.transform
        (0.0, 'rows')
    """

    framework = "mmengine"


class LPCSI(BaseMetric):
    """LPC-SI (no-reference sharpness) as an mmengine ``BaseMetric`` in mmagic's sample-wise convention.

    Convention:
        As mmagic's ``BaseSampleWiseMetric`` (its PSNR, SSIM): every data sample is a dict whose
        ``output[pred_key]`` (``pred_img`` by default) is one image (C, H, W) with values in
        [0, 255] (a tensor or numpy array; C = 1 or 3), in ``channel_order`` (mmagic's metrics
        take ``"BGR"``), or a (T, C, H, W) stack whose frames are averaged. ``crop_border``
        pixels are cut from every side, then the value is :func:`stftblur.metrics.lpc_si` of
        the image in RGB order with ``data_range=255``, in float64. :meth:`compute_metrics`
        returns ``{"LPCSI": mean over the samples}`` (higher is sharper). The LPC-SI options
        (``scales``, ``scale_weights``, ``C``, ``beta_k``, ``n_orientations``, ``border``) may
        be set; any other keyword is a :class:`TypeError`.

    Args:
        pred_key: the key of the image in each sample's ``output``.
        crop_border: pixels left out on every side.
        channel_order: ``"BGR"`` or ``"RGB"``.
        collect_device: ``"cpu"`` or ``"gpu"``, where results are gathered in distributed runs.
        prefix: prefix of the metric name, as for every ``BaseMetric``.
        **lpc_si_options: other arguments of :func:`~stftblur.metrics.lpc_si`.

    Examples:
        >>> import torch
        >>> from mmengine.registry import METRICS
        >>> metric = METRICS.build(dict(type="LPCSI"))
        >>> img = torch.zeros(3, 64, 64); img[:, 16:48, 16:48] = 255.0
        >>> metric.process([], [{"output": {"pred_img": img}}])
        >>> round(metric.compute_metrics(metric.results)["LPCSI"], 4) > 0.5
        True
    """

    metric = "LPCSI"
    # No prefix unless one is given, as mmagic's sample-wise metrics ("LPCSI", not "x/LPCSI");
    # an empty default also keeps mmengine from warning that no prefix is set.
    default_prefix: Optional[str] = ""

    def __init__(self, pred_key: str = "pred_img", crop_border: int = 0, channel_order: str = "BGR",
                 collect_device: str = "cpu", prefix: Optional[str] = None, **lpc_si_options: Any) -> None:
        self.lpc_si_options = split_lpc_si_options(lpc_si_options, (), "LPCSI")
        if channel_order not in ("BGR", "RGB"):
            raise ValueError(f"LPCSI: channel_order must be 'BGR' or 'RGB', got {channel_order!r}")
        if not isinstance(pred_key, str):
            raise TypeError(f"LPCSI: pred_key must be a str, got {type(pred_key).__name__}")
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.pred_key = pred_key
        self.crop_border = crop_border
        self.channel_order = channel_order

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Add the LPC-SI of every sample's ``output[pred_key]`` to ``self.results``."""
        for i, sample in enumerate(data_samples):
            if hasattr(sample, "to_dict"):  # a data element that the evaluator did not turn into a dict
                sample = sample.to_dict()
            output = sample.get("output") if isinstance(sample, dict) else None
            if hasattr(output, "to_dict"):
                output = output.to_dict()
            if not isinstance(output, dict) or self.pred_key not in output:
                raise KeyError(
                    f"LPCSI: data_samples[{i}] has no output[{self.pred_key!r}]; mmagic's convention is a dict "
                    f"with output={{{self.pred_key!r}: (C, H, W) image in [0, 255]}}"
                )
            pred = output[self.pred_key]
            frames = [pred] if getattr(pred, "ndim", 0) != 4 else list(pred)
            values = [
                lpc_si_of_array(frame, layout="CHW", channel_order=self.channel_order, crop_border=self.crop_border,
                                options=self.lpc_si_options, name=f"data_samples[{i}].output[{self.pred_key!r}]",
                                uint8_only=False)
                for frame in frames
            ]
            self.results.append({self.metric: sum(values) / len(values)})

    def compute_metrics(self, results: List[Dict[str, float]]) -> Dict[str, float]:
        """``{"LPCSI": the mean over the samples}``."""
        if not results:
            raise RuntimeError("LPCSI.compute_metrics() got no result: process() saw no sample")
        return {self.metric: sum(r[self.metric] for r in results) / len(results)}


def _register() -> None:
    for registry, obj in ((MODELS, LocalPhaseLoss), (METRICS, LPCSI)):
        name = obj.__name__
        existing = registry.module_dict.get(name)
        check_registration(f"mmengine's root {registry.name} registry", name, existing, obj)
        registry.register_module(name=name, module=obj, force=existing is not None)


_register()
