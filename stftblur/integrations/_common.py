"""What the framework adapters share (private; imports no framework).

* :func:`require_framework`: import a framework or raise the one-line error naming the extra.
* :func:`check_registration`: the rule every adapter follows when it registers a name: a name
  that is free is taken; a name held by this same adapter (a second import, or
  ``importlib.reload``) is taken over by the new object; a name held by anything else is an
  error that says who holds it. Nothing is silently replaced.
* :class:`WeightedLocalPhaseLoss`: :class:`stftblur.LocalPhaseLoss` with the loss convention that
  BasicSR and mmagic share (``loss_weight``, ``reduction``, ``forward(pred, target, weight=None,
  **kwargs)``), configured from a framework's config file (every
  :class:`~stftblur.losses.LocalPhaseConfig` option and ``preset``).
* :func:`lpc_si_of_array`: LPC-SI of one 8-bit-range image in a framework's layout and channel order.
"""

from __future__ import annotations

import dataclasses
import numbers
from types import ModuleType
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn

from stftblur.errors import require_extra
from stftblur.losses import LocalPhaseConfig, local_phase_loss
from stftblur.losses.config import format_options
from stftblur.metrics import lpc_si
from stftblur.metrics.lpc_si import LPCSISettings

__all__ = [
    "LPC_SI_OPTIONS",
    "WeightedLocalPhaseLoss",
    "check_registration",
    "lpc_si_of_array",
    "require_framework",
    "split_lpc_si_options",
]

_REDUCTIONS = ("none", "mean", "sum")

#: The keyword arguments of :func:`stftblur.metrics.lpc_si` that a framework config may set
#: (``data_range`` is fixed by each framework's image convention).
LPC_SI_OPTIONS = tuple(f.name for f in dataclasses.fields(LPCSISettings) if f.name != "data_range")

#: The options of :class:`LocalPhaseConfig` that also take a tensor (given as nested lists in YAML).
_TENSOR_OPTIONS = ("window", "frequency_weighting")


def require_framework(module: str, extra: str, adapter: str) -> ModuleType:
    """Import ``module`` for the adapter ``adapter``, or raise the error naming ``extra``.

    The error is :class:`stftblur.errors.MissingExtraError` (an :class:`ImportError`) with the
    one-line message ``"<adapter> needs <package>: pip install 'stftblur[<extra>]'"``.
    """
    return require_extra(module, extra, adapter)


def _origin(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def check_registration(registry: str, name: str, existing: Optional[object], new: object) -> None:
    """Raise if ``name`` is held in ``registry`` by an object that is not an earlier version of ``new``.

    "An earlier version" is an object of the same module and qualified name: what a second
    import or ``importlib.reload`` of the adapter leaves behind. Anything else is another
    package's entry, which is never replaced: the error names its module and what to do.
    """
    if existing is None or existing is new or _origin(existing) == _origin(new):
        return
    raise RuntimeError(
        f"{registry} already holds an entry named {name!r} from {_origin(existing)}; "
        f"{_origin(new)} does not replace another package's entry. Import only one of them, or "
        f"rename the other entry."
    )


def _coerce_options(options: Dict[str, Any], owner: str) -> Dict[str, Any]:
    """Config-file values into the types :class:`LocalPhaseConfig` takes.

    YAML 1.1 (PyYAML, which BasicSR uses) reads ``1e-4`` without a dot as text, so a float
    option given as text that parses as a number becomes that number; nested lists for
    ``window`` and ``frequency_weighting`` become float32 tensors. Anything else is left for
    :class:`LocalPhaseConfig` to check.
    """
    defaults = LocalPhaseConfig().to_dict()
    out = dict(options)
    for name, value in options.items():
        if name not in defaults:
            continue
        if isinstance(defaults[name], float) and isinstance(value, str):
            try:
                out[name] = float(value)
            except ValueError:
                raise TypeError(f"{owner}: {name} must be a number, got {value!r}") from None
        elif name in _TENSOR_OPTIONS and isinstance(value, (list, tuple)):
            try:
                out[name] = torch.tensor(value, dtype=torch.float32)
            except (TypeError, ValueError) as e:
                raise TypeError(f"{owner}: {name} given as a list must be a rectangular list of numbers ({e})") from None
    return out


class WeightedLocalPhaseLoss(nn.Module):
    """:class:`stftblur.LocalPhaseLoss` with BasicSR's and mmagic's loss convention.

    Convention:
        ``loss_weight * reduction_i(w_i * L_i)`` where ``L_i`` is the local-phase loss of image
        i (:func:`stftblur.local_phase_loss` with ``reduction="none"``) and ``w_i`` its weight.
        The options are those of :class:`~stftblur.losses.LocalPhaseConfig`, one by one, on top
        of ``preset`` (``"paper-text"``, ``"paper-code"`` or ``"default"``; None is the
        defaults); a name that is not an option is a :class:`TypeError` naming it. Float options
        written as text (YAML's ``1e-4``) are read as numbers, nested lists for ``window`` and
        ``frequency_weighting`` as tensors.

        ``weight`` (the frameworks pass a per-pixel map for pixel losses) must hold one weight
        per image: shape (B,), (B, 1) or (B, 1, 1, 1). The loss compares the local spectra of
        whole images, so a per-pixel map has no meaning for it and is refused. With weights,
        ``"mean"`` is ``sum(w_i L_i) / sum(w_i)`` (the frameworks' "mean over the weighted
        region"), ``"sum"`` is ``sum(w_i L_i)`` and ``"none"`` gives ``w_i L_i``. Other keyword
        arguments of ``forward`` are accepted and unused, as in the frameworks' own losses.

    Args:
        loss_weight: the factor of the loss in the total.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` over the images of the batch.
        preset: a name of :data:`stftblur.losses.PRESETS`, or None.
        **options: single :class:`~stftblur.losses.LocalPhaseConfig` options (they replace the
            preset's).
    """

    #: The framework named in error messages (set by each adapter).
    framework: ClassVar[str] = "framework"

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", preset: Optional[str] = None,
                 **options: Any) -> None:
        super().__init__()
        owner = f"{type(self).__name__} ({self.framework} loss)"
        unknown = sorted(set(options) - set(LocalPhaseConfig.field_names()))
        if unknown:
            raise TypeError(
                f"{owner} got unknown option(s) {unknown}; it takes loss_weight, reduction, preset and the "
                f"LocalPhaseConfig options {', '.join(LocalPhaseConfig.field_names())}"
            )
        if isinstance(loss_weight, str):
            try:
                loss_weight = float(loss_weight)
            except ValueError:
                raise TypeError(f"{owner}: loss_weight must be a number, got {loss_weight!r}") from None
        if isinstance(loss_weight, bool) or not isinstance(loss_weight, numbers.Real):
            raise TypeError(f"{owner}: loss_weight must be a number, got {type(loss_weight).__name__}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{owner}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        options = _coerce_options(options, owner)
        if preset is None:
            config = LocalPhaseConfig(**options)
        else:
            config = LocalPhaseConfig.from_preset(preset, **options)
        self.loss_weight = float(loss_weight)
        self.reduction = reduction
        self.preset = preset
        #: The :class:`~stftblur.losses.LocalPhaseConfig` in use.
        self.options = config

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                **kwargs: Any) -> torch.Tensor:
        """The weighted loss of ``pred`` (B, C, H, W) against ``target``; see the class."""
        values = local_phase_loss(pred, target, config=self.options, reduction="none")
        if weight is None:
            if self.reduction == "mean":
                loss = values.mean()
            elif self.reduction == "sum":
                loss = values.sum()
            else:
                loss = values
        else:
            w = _per_image_weight(weight, values)
            weighted = values * w
            if self.reduction == "mean":
                loss = weighted.sum() / w.sum()
            elif self.reduction == "sum":
                loss = weighted.sum()
            else:
                loss = weighted
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        head = f"loss_weight={self.loss_weight!r}, reduction={self.reduction!r}, preset={self.preset!r}"
        return f"{head}, {format_options(self.options.to_dict())}"


def _per_image_weight(weight: object, values: torch.Tensor) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be None or a tensor of one weight per image, got {type(weight).__name__}")
    b = values.shape[0]
    if weight.dim() == 0 or weight.shape[0] != b or any(s != 1 for s in weight.shape[1:]):
        raise ValueError(
            f"weight must hold one weight per image, shape ({b},), ({b}, 1) or ({b}, 1, 1, 1), got "
            f"{tuple(weight.shape)}; the local-phase loss compares the local spectra of whole images, so a "
            f"per-pixel weight map has no meaning for it"
        )
    return weight.reshape(b).to(device=values.device, dtype=values.dtype)


def lpc_si_of_array(
    img: Any,
    *,
    layout: str,
    channel_order: str,
    crop_border: int = 0,
    options: Optional[Mapping[str, Any]] = None,
    name: str = "img",
    uint8_only: bool = True,
) -> float:
    """LPC-SI of one image with values in [0, 255], as :func:`stftblur.metrics.lpc_si` of its RGB (or gray) version.

    Convention:
        ``img`` is a numpy array (or, with ``uint8_only=False``, a tensor, of any real dtype)
        in ``layout`` ``"HWC"`` or ``"CHW"`` with 1 or 3 channels, or (H, W) for gray;
        ``channel_order`` ``"BGR"`` or ``"RGB"`` for 3 channels. ``crop_border`` pixels are cut
        from every side first. The index is computed in float64 with ``data_range=255``
        (``options`` are the other :func:`~stftblur.metrics.lpc_si` arguments).
    """
    if layout not in ("HWC", "CHW"):
        raise ValueError(f"input_order must be 'HWC' or 'CHW', got {layout!r}")
    if channel_order not in ("BGR", "RGB"):
        raise ValueError(f"channel_order must be 'BGR' or 'RGB', got {channel_order!r}")
    if isinstance(img, torch.Tensor) and not uint8_only:
        x = img.detach().to("cpu")
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must hold real pixel values in [0, 255], got {x.dtype}")
        x = x.to(torch.float64)
    elif isinstance(img, np.ndarray):
        if uint8_only and img.dtype != np.uint8:
            raise TypeError(
                f"{name} must be a uint8 image in [0, 255] (BasicSR's tensor2img output), got dtype {img.dtype}; "
                f"convert a [0, 1] float image with (img * 255).round().astype(np.uint8)"
            )
        if not (np.issubdtype(img.dtype, np.integer) or np.issubdtype(img.dtype, np.floating)):
            raise TypeError(f"{name} must hold real pixel values in [0, 255], got dtype {img.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(img)).to(torch.float64)
    else:
        expected = "a numpy array" if uint8_only else "a numpy array or a torch.Tensor"
        raise TypeError(f"{name} must be {expected}, got {type(img).__name__}")
    shape = tuple(x.shape)
    if x.dim() == 2:
        x = x[None]
    elif x.dim() == 3 and layout == "HWC" and x.shape[2] in (1, 3):
        x = x.permute(2, 0, 1)
    elif not (x.dim() == 3 and layout == "CHW" and x.shape[0] in (1, 3)):
        want = "(H, W, C)" if layout == "HWC" else "(C, H, W)"
        raise ValueError(
            f"{name} must have shape {want} with C = 1 or 3, or (H, W), for input_order={layout!r}; got {shape}"
        )
    if isinstance(crop_border, bool) or not isinstance(crop_border, numbers.Integral) or crop_border < 0:
        raise ValueError(f"crop_border must be an int >= 0, got {crop_border!r}")
    h, w = x.shape[-2:]
    if crop_border:
        if 2 * crop_border >= min(h, w):
            raise ValueError(f"crop_border={crop_border} leaves no pixel of {name} of spatial size {(h, w)}")
        x = x[:, crop_border:-crop_border, crop_border:-crop_border]
    if x.shape[0] == 3 and channel_order == "BGR":
        x = x.flip(0)
    return float(lpc_si(x[None].contiguous(), data_range=255.0, **dict(options or {}))[0])


def split_lpc_si_options(kwargs: Mapping[str, Any], ignored: Tuple[str, ...], owner: str) -> Dict[str, Any]:
    """The LPC-SI options among ``kwargs``; names in ``ignored`` are dropped, any other is an error."""
    unknown = sorted(set(kwargs) - set(LPC_SI_OPTIONS) - set(ignored))
    if unknown:
        raise TypeError(
            f"{owner} got unexpected keyword argument(s) {unknown}; it takes the LPC-SI options "
            f"{', '.join(LPC_SI_OPTIONS)}" + (f" (and ignores {', '.join(ignored)})" if ignored else "")
        )
    options = {k: v for k, v in kwargs.items() if k in LPC_SI_OPTIONS}
    LPCSISettings.create(**options)  # every value checked now, with an error naming it
    return options
