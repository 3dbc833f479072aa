"""LocalPhaseLoss: L1 on local (STFT) amplitude and phase, weighted towards high frequencies.

The options are those of :class:`~stftblur.losses.LocalPhaseConfig`; :class:`FourierLoss` is
the variant with one window over the whole image.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from stftblur._checks import check_choice, check_pair, check_reduction, reduce
from stftblur.losses._fused import KERNELS, check_tensor_options, frequency_weights
from stftblur.losses._ops import local_phase_values
from stftblur.losses.config import (  # noqa: F401 (AGGREGATES ... are re-exported for compatibility)
    AGGREGATES,
    FREQUENCY_WEIGHTINGS,
    PHASE_DISTANCES,
    PRESETS,
    TRANSFORMS,
    LocalPhaseConfig,
    WeightSpec,
    format_options,
    options_signature,
)
from stftblur.transforms import StftPlan, resolve_window_size

__all__ = ["FourierLoss", "LocalPhaseLoss", "fourier_loss", "frequency_weights", "local_phase_loss"]


# The options in the order of the original signature (the order of ``LocalPhaseLoss.config``
# and of the repr).
_CONFIG_ORDER = (
    "window_size", "stride", "phase_weight", "amplitude_weight", "frequency_weighting", "phase_distance",
    "window", "reduction", "aggregate", "normalized", "transform", "phase_offset", "eps",
)
_DEFAULT = LocalPhaseConfig()


def _resolve(config: Optional[LocalPhaseConfig], options: Dict[str, Any], base: LocalPhaseConfig) -> LocalPhaseConfig:
    """``config`` (default ``base``) with ``options`` applied, validated."""
    if config is None:
        config = base
    elif not isinstance(config, LocalPhaseConfig):
        raise TypeError(f"config must be a LocalPhaseConfig, got {type(config).__name__}")
    return config.replace(**options) if options else config


def local_phase_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    config: Optional[LocalPhaseConfig] = None,
    reduction: str = "mean",
    kernels: str = "auto",
    **options: Any,
) -> torch.Tensor:
    r"""Local phase and amplitude loss on the short-time Fourier transforms of two images.

    .. math:: L = \operatorname{agg}_j\, W_j \big(\lambda\, d(P_{o,j}, P_{i,j})
              + \alpha\, |A_{o,j} - A_{i,j}|\big)

    where :math:`A` and :math:`P` are the amplitude and phase of every coefficient :math:`j` of
    :func:`stftblur.stft2d` (all patches, channels and frequencies), :math:`W_j` the frequency
    weight, :math:`\lambda` = ``phase_weight`` and :math:`\alpha` = ``amplitude_weight``. This
    is the paper's :math:`L_{freq}` (section 3.1) with ``aggregate="sum"``.

    Convention:
        The options after the two tensors are keyword-only: those of
        :class:`~stftblur.losses.LocalPhaseConfig` (defaults, choices and their meaning are
        documented there), given one by one, as a ``config``, or both (``config`` with single
        options replaced). ``reduction`` combines the images (``"none"`` gives shape (B,)).

        ``phase_distance="wrapped"`` is :math:`|\angle(F_o \overline{F_i})| \in [0, \pi]`, the
        shortest angle between the two phases (no :math:`2\pi` jumps); it is 0 where either
        coefficient is exactly 0, which has no phase. ``"raw"`` is
        :math:`|\angle(F_o + \delta) - \angle(F_i + \delta)| \in [0, 2\pi)` with
        :math:`\delta` = ``phase_offset`` added to the real part, what the authors' code computes
        (with :math:`\delta = 10^{-6}`). ``"cosine"`` is :math:`1 - \cos` of the difference.
        ``frequency_weighting="linear"`` is the radial frequency magnitude normalised to
        [0, 1] (0 at DC); ``"product"`` the product of the per-axis magnitudes; ``"none"`` all
        ones; a tensor is broadcast against the (P, Q) coefficient grid. With
        ``normalized=True`` the transform is divided by the window's sum, so amplitudes are in
        units of pixel intensity and the balance of amplitude and phase does not depend on the
        window size. ``aggregate`` combines the coefficients of one image (mean or sum).

        The phase of a coefficient is not differentiable at zero amplitude, where its gradient
        :math:`i F / |F|^2` diverges. The backward pass uses :math:`i F / \max(|F|^2,
        \epsilon^2)` instead: exact wherever :math:`|F| \ge \epsilon` (``eps``), tapering
        linearly to 0 below, so the gradient is finite everywhere (it is exactly 0 on an all-zero
        patch) and never larger than :math:`\lambda W / \epsilon` per coefficient. The forward
        value is exact. float16 and bfloat16 inputs (for example under ``torch.autocast``) are
        computed in float32, float64 is kept. The gradient is computed in the forward pass and
        is not itself differentiable: backward with ``create_graph=True`` (gradient penalties)
        raises a ``RuntimeError``. With ``kernels="auto"``, on the CPU in float32 the
        per-coefficient work runs in kernels compiled on first use where a C compiler is
        available, and otherwise in pure PyTorch, with the same results within float32 rounding
        (``docs/benchmarks.md``); ``kernels="reference"`` always takes the pure-PyTorch path (a
        setting of this call only, nothing process-wide). The loss is one PyTorch custom
        operator (``torch.ops.stftblur.local_phase``), so ``torch.compile`` (also with
        ``fullgraph=True``) calls the same code as eager mode (``docs/integrations.md``).

    Args:
        input: output images, shape (B, C, H, W), floating point.
        target: reference images of the same shape.
        config: a :class:`~stftblur.losses.LocalPhaseConfig` (default: its defaults).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` over the batch.
        kernels: ``"auto"`` (the compiled CPU kernels where they apply) or ``"reference"``
            (the pure-PyTorch path).
        **options: single options of :class:`~stftblur.losses.LocalPhaseConfig`, e.g.
            ``window_size=8``; they replace those of ``config``.

    Returns:
        The loss: a scalar, or shape (B,) with ``reduction="none"``.

    Examples:
        >>> import torch
        >>> target = torch.rand(4, 1, 28, 28)
        >>> output = target.clone().requires_grad_()
        >>> local_phase_loss(output, target)
        tensor(0., grad_fn=<MeanBackward0>)
        >>> loss = local_phase_loss(output, target + 0.1 * torch.randn_like(target), window_size=8)
        >>> loss.backward()
        >>> output.grad.shape
        torch.Size([4, 1, 28, 28])
    """
    cfg = _resolve(config, options, _DEFAULT)
    return _local_phase_loss(input, target, cfg, reduction, kernels)


local_phase_loss.__signature__ = options_signature(  # type: ignore[attr-defined]
    tuple(inspect.signature(local_phase_loss).parameters.values())[:2],
    (
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="mean"),
        inspect.Parameter("kernels", inspect.Parameter.KEYWORD_ONLY, default="auto"),
    ),
)


def _local_phase_loss(
    input: torch.Tensor, target: torch.Tensor, cfg: LocalPhaseConfig, reduction: str, kernels: str
) -> torch.Tensor:
    """The loss for a validated config: check the images and the options, run the fused operator."""
    check_reduction(reduction)
    check_choice(kernels, "kernels", KERNELS)
    check_pair(input, target, min_size=cfg.window_size)
    h, w = input.shape[-2:]
    size, stride = resolve_window_size(cfg.window_size, cfg.stride, h, w)
    dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    window, weighting = cfg.window, cfg.frequency_weighting
    tensor_window = window.detach().to(dtype=dtype, device=input.device) if isinstance(window, torch.Tensor) else None
    tensor_weighting = None
    if isinstance(weighting, torch.Tensor):
        tensor_weighting = weighting.detach().to(dtype=dtype, device=input.device)
    if tensor_window is not None or tensor_weighting is not None:
        check_tensor_options(StftPlan(size, stride, cfg.transform, cfg.normalized), window, weighting)
    with torch.autocast(device_type=input.device.type, enabled=False):
        values = local_phase_values(
            input.to(dtype),
            target.to(dtype),
            tensor_window,
            tensor_weighting,
            "none" if window is None else (window if isinstance(window, str) else "tensor"),
            weighting if isinstance(weighting, str) else "tensor",
            size,
            stride,
            cfg.transform,
            cfg.normalized,
            cfg.aggregate,
            float(cfg.phase_weight),
            float(cfg.amplitude_weight),
            cfg.phase_distance,
            float(cfg.phase_offset),
            float(cfg.eps),
            kernels,
        )
    return reduce(values, reduction)


class LocalPhaseLoss(nn.Module):
    r"""Module form of :func:`local_phase_loss`; see there for the conventions.

    Args:
        config: a :class:`~stftblur.losses.LocalPhaseConfig` (default: its defaults).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` over the batch.
        kernels: ``"auto"`` | ``"reference"``, see :func:`local_phase_loss`.
        **options: single options of :class:`~stftblur.losses.LocalPhaseConfig`; they replace
            those of ``config``. Validated here, once.

    Attributes:
        options: the :class:`~stftblur.losses.LocalPhaseConfig` in use; every option is also an
            attribute (``loss.window_size``).
        reduction: the batch reduction.
        kernels: the implementation of the per-coefficient work.
        config: the options, ``reduction`` and (unless ``"auto"``) ``kernels`` as a dict, so
            that ``type(loss)(**loss.config)`` is the same loss.

    Shape:
        - input: (B, C, H, W)
        - target: (B, C, H, W)
        - output: scalar, or (B,) with ``reduction="none"``.

    Examples:
        >>> import torch
        >>> criterion = LocalPhaseLoss(window_size=8, stride=4)
        >>> x = torch.rand(2, 3, 32, 32, requires_grad=True)
        >>> criterion(x, torch.rand(2, 3, 32, 32)).backward()
        >>> LocalPhaseLoss.from_preset("paper-code")
        LocalPhaseLoss(window_size=16, stride=4, phase_weight=0.9, amplitude_weight=0.1, frequency_weighting='product', phase_distance='raw', window=None, reduction='mean', aggregate='sum', normalized=False, transform='rows', phase_offset=1e-06, eps=0.0001)
    """

    #: The configuration that ``options`` start from (subclasses such as :class:`FourierLoss`
    #: change it).
    default_options: LocalPhaseConfig = _DEFAULT

    def __init__(self, *, config: Optional[LocalPhaseConfig] = None, reduction: str = "mean", kernels: str = "auto",
                 **options: Any) -> None:
        super().__init__()
        check_reduction(reduction)
        check_choice(kernels, "kernels", KERNELS)
        self.options = self._make_options(config, options)
        self.reduction = reduction
        self.kernels = kernels

    def _make_options(self, config: Optional[LocalPhaseConfig], options: Dict[str, Any]) -> LocalPhaseConfig:
        return _resolve(config, options, self.default_options)

    @property
    def config(self) -> Dict[str, Any]:
        """The options, ``reduction`` and (unless ``"auto"``) ``kernels``, so that
        ``type(loss)(**loss.config)`` is the same loss."""
        options = self.options.to_dict()
        # reduction in its place of the original signature (the repr keeps its order)
        values = {**options, "reduction": self.reduction}
        if self.kernels != "auto":
            values["kernels"] = self.kernels
        order = [n for n in _CONFIG_ORDER if n in values] + [n for n in values if n not in _CONFIG_ORDER]
        return {n: values[n] for n in order}

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "LocalPhaseLoss":
        """A loss configured as ``"paper-text"``, ``"paper-code"`` or ``"default"``.

        ``overrides`` replace single options of the preset, e.g. ``window_size=8``
        (``reduction`` and ``kernels`` too).

        Examples:
            >>> LocalPhaseLoss.from_preset("paper-text").window
            'hann'
        """
        check_choice(name, "preset", tuple(PRESETS))
        reduction = overrides.pop("reduction", "mean")
        kernels = overrides.pop("kernels", "auto")
        return cls(config=LocalPhaseConfig.from_preset(name, **overrides), reduction=reduction, kernels=kernels)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _local_phase_loss(input, target, self.options, self.reduction, self.kernels)

    def terms(self, input: torch.Tensor, target: torch.Tensor) -> Dict[str, torch.Tensor]:
        r"""The loss split into its amplitude and phase parts, for logging.

        Convention:
            ``"amplitude"`` is the loss with ``phase_weight=0`` and ``"phase"`` the loss with
            ``amplitude_weight=0``, each already multiplied by its weight (:math:`\alpha`,
            :math:`\lambda`) and by the frequency weights, reduced like :meth:`forward`;
            ``"total"`` is their sum, which equals :meth:`forward` up to float rounding (the loss
            is linear in the two weights). Costs two evaluations of the loss; every part is
            differentiable, so ``terms(...)["total"]`` can also be trained on.

        Examples:
            >>> import torch
            >>> x = torch.rand(2, 1, 32, 32)
            >>> t = LocalPhaseLoss().terms(x, 2 * x)  # same phases, doubled amplitudes
            >>> sorted(t), round(t["phase"].item(), 4), t["amplitude"].item() > 0
            (['amplitude', 'phase', 'total'], 0.0, True)
        """
        amplitude = _local_phase_loss(input, target, self.options.replace(phase_weight=0.0), self.reduction, self.kernels)
        phase = _local_phase_loss(input, target, self.options.replace(amplitude_weight=0.0), self.reduction, self.kernels)
        return {"amplitude": amplitude, "phase": phase, "total": amplitude + phase}

    def extra_repr(self) -> str:
        return format_options(self.config)


def _option_property(name: str) -> property:
    return property(lambda self: getattr(self.options, name), doc=f"The ``{name}`` option (read-only).")


for _name in LocalPhaseConfig.field_names():
    setattr(LocalPhaseLoss, _name, _option_property(_name))
del _name


def fourier_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    config: Optional[LocalPhaseConfig] = None,
    reduction: str = "mean",
    kernels: str = "auto",
    **options: Any,
) -> torch.Tensor:
    r"""Global Fourier amplitude + phase loss (one window covering the whole image).

    The "DFT+SSIM" row of the paper's Table 1 and the Fourier-space loss of Fuoli et al. (2021):
    :func:`local_phase_loss` with the options of
    :meth:`LocalPhaseConfig.fourier() <stftblur.losses.LocalPhaseConfig.fourier>`:
    ``window_size=None`` and no window.

    Convention:
        As :func:`local_phase_loss`; equal amplitude and phase weights by default, as Fuoli et
        al. With ``normalized=True`` the DFT is divided by H * W. ``window_size``, ``stride``
        and ``window`` cannot be set.

    Examples:
        >>> import torch
        >>> x = torch.rand(2, 1, 28, 28)
        >>> fourier_loss(x, x)
        tensor(0.)
    """
    cfg = LocalPhaseConfig.fourier(**options) if config is None else _check_fourier(config).replace(**options)
    return _local_phase_loss(input, target, cfg, reduction, kernels)


fourier_loss.__signature__ = options_signature(  # type: ignore[attr-defined]
    tuple(inspect.signature(fourier_loss).parameters.values())[:2],
    (
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="mean"),
        inspect.Parameter("kernels", inspect.Parameter.KEYWORD_ONLY, default="auto"),
    ),
    defaults=LocalPhaseConfig.fourier(),
    exclude=("window_size", "stride", "window"),
)


def _check_fourier(config: LocalPhaseConfig) -> LocalPhaseConfig:
    if not isinstance(config, LocalPhaseConfig):
        raise TypeError(f"config must be a LocalPhaseConfig, got {type(config).__name__}")
    if config.window_size is not None or config.window is not None:
        raise ValueError(
            "a Fourier loss has one window over the whole image and no analysis window; got "
            f"window_size={config.window_size!r}, window={config.window!r} (use LocalPhaseConfig.fourier())"
        )
    return config


class FourierLoss(LocalPhaseLoss):
    """Module form of :func:`fourier_loss`: a :class:`LocalPhaseLoss` whose options start from
    :meth:`LocalPhaseConfig.fourier() <stftblur.losses.LocalPhaseConfig.fourier>`.

    Examples:
        >>> import torch
        >>> FourierLoss()(torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28)).shape
        torch.Size([])
        >>> FourierLoss(phase_weight=2.0).options.window_size is None
        True
    """

    default_options = LocalPhaseConfig.fourier()

    def __init__(self, *, config: Optional[LocalPhaseConfig] = None, reduction: str = "mean", kernels: str = "auto",
                 **options: Any) -> None:
        super().__init__(config=config, reduction=reduction, kernels=kernels, **options)

    def _make_options(self, config: Optional[LocalPhaseConfig], options: Dict[str, Any]) -> LocalPhaseConfig:
        if config is None:
            return LocalPhaseConfig.fourier(**options)
        return _check_fourier(config).replace(**options)



def _module_signature(defaults: LocalPhaseConfig, exclude: Tuple[str, ...] = ()) -> inspect.Signature:
    trailing = (
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="mean"),
        inspect.Parameter("kernels", inspect.Parameter.KEYWORD_ONLY, default="auto"),
    )
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return options_signature((self,), trailing, defaults=defaults, exclude=exclude)


# help() and the API reference show every option of the modules (their __init__ takes **options).
LocalPhaseLoss.__init__.__signature__ = _module_signature(_DEFAULT)  # type: ignore[attr-defined]
FourierLoss.__init__.__signature__ = _module_signature(  # type: ignore[attr-defined]
    LocalPhaseConfig.fourier(), exclude=("window_size", "stride", "window")
)
