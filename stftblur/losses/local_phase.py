"""LocalPhaseLoss: L1 on local (STFT) amplitude and phase, weighted towards high frequencies."""

from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import nn

from stftblur._checks import (
    check_choice,
    check_pair,
    check_positive_float,
    check_reduction,
    reduce,
)
from stftblur.transforms import StftPlan, WindowSpec, make_window, resolve_window_size

WeightSpec = Union[str, torch.Tensor]

PHASE_DISTANCES = ("wrapped", "raw", "cosine")
FREQUENCY_WEIGHTINGS = ("linear", "product", "none")
AGGREGATES = ("mean", "sum")
TRANSFORMS = ("2d", "rows")


@functools.lru_cache(maxsize=64)
def _axis_ramps(kind: str, window_size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-axis frequency (or row) magnitudes of the coefficients, each normalised to [0, 1]."""
    wh, ww = window_size
    if kind == "rows":
        # The authors' code: linspace(0, 1, w/2) over patch rows and over width-frequencies.
        return torch.linspace(0, 1, wh // 2, dtype=torch.float64), torch.linspace(0, 1, ww // 2, dtype=torch.float64)
    fu = torch.fft.fftfreq(wh, dtype=torch.float64).abs()
    fv = torch.fft.rfftfreq(ww, dtype=torch.float64)
    return fu / fu.max().clamp_min(1e-12), fv / fv.max().clamp_min(1e-12)


def frequency_weights(
    weighting: WeightSpec, window_size: Tuple[int, int], kind: str = "2d"
) -> Optional[torch.Tensor]:
    """The weight W of every coefficient, shape (P, Q), or None for "none".

    ``"linear"``: the radial frequency magnitude sqrt(fu^2 + fv^2), normalised to [0, 1] (0 at
    DC, 1 at the highest frequency of both axes). ``"product"``: the product of the two
    per-axis magnitudes, each normalised to [0, 1] (for ``kind="rows"`` this is exactly the
    authors' ramp, patch row times width-frequency). ``"none"``: all ones.
    """
    if isinstance(weighting, torch.Tensor):
        return weighting
    check_choice(weighting, "frequency_weighting", FREQUENCY_WEIGHTINGS)
    if weighting == "none":
        return None
    a, b = _axis_ramps(kind, window_size)
    if weighting == "product":
        return torch.outer(a, b)
    return torch.sqrt(a[:, None] ** 2 + b[None, :] ** 2) / (2.0**0.5)


def _safe_inverse(power: torch.Tensor, eps: float) -> torch.Tensor:
    """1 / |F|^2, capped at 1 / eps^2 (the phase gradient's safety valve; see the docstring)."""
    return 1.0 / power.clamp_min(eps * eps)


def _terms(
    fo: torch.Tensor,
    ft: torch.Tensor,
    phase_distance: str,
    phase_offset: float,
    eps: float,
    need_target_grad: bool,
):
    """Per-coefficient amplitude distance, phase distance and their gradients.

    Returns (amp_dist, phase_dist, d_amp_o, d_phase_o, d_amp_t, d_phase_t) where the gradients
    are complex tensors in PyTorch's convention (dL/dRe + i dL/dIm) of the distances with
    respect to the output (o) and target (t) coefficients.
    """
    # Amplitudes.
    po = fo.real.square() + fo.imag.square()
    pt = ft.real.square() + ft.imag.square()
    ao = po.sqrt()
    at = pt.sqrt()
    diff = ao - at
    amp_dist = diff.abs()
    s_a = diff.sign()
    # d|F|/dF = F / |F| (0 where F = 0).
    d_amp_o = fo * (s_a / ao.clamp_min(torch.finfo(ao.dtype).tiny))
    d_amp_t = ft * (-s_a / at.clamp_min(torch.finfo(at.dtype).tiny)) if need_target_grad else None

    # Phases. d angle(F) / dF = i F / |F|^2.
    if phase_distance == "raw":
        if phase_offset:
            fo_p = fo + phase_offset
            ft_p = ft + phase_offset
            po_p = fo_p.real.square() + fo_p.imag.square()
            pt_p = ft_p.real.square() + ft_p.imag.square()
        else:
            fo_p, ft_p, po_p, pt_p = fo, ft, po, pt
        d = torch.atan2(fo_p.imag, fo_p.real) - torch.atan2(ft_p.imag, ft_p.real)
        phase_dist = d.abs()
        g = d.sign()
        d_phase_o = 1j * fo_p * (g * _safe_inverse(po_p, eps))
        d_phase_t = 1j * ft_p * (-g * _safe_inverse(pt_p, eps)) if need_target_grad else None
        return amp_dist, phase_dist, d_amp_o, d_phase_o, d_amp_t, d_phase_t

    # P = Fo conj(Ft); its angle is the wrapped phase difference in (-pi, pi], and 0 where
    # either coefficient is 0 (a zero coefficient has no phase to compare).
    re = fo.real * ft.real + fo.imag * ft.imag
    im = fo.imag * ft.real - fo.real * ft.imag
    if phase_distance == "wrapped":
        phase_dist = torch.atan2(im.abs(), re)
        g = im.sign()  # sign of the wrapped difference
    else:  # cosine: 1 - cos(d), derivative sin(d)
        norm = (ao * at).clamp_min(torch.finfo(ao.dtype).tiny)
        zero = (ao * at) == 0
        phase_dist = torch.where(zero, torch.zeros_like(re), 1.0 - re / norm)
        g = torch.where(zero, torch.zeros_like(im), im / norm)
    d_phase_o = 1j * fo * (g * _safe_inverse(po, eps))
    d_phase_t = 1j * ft * (-g * _safe_inverse(pt, eps)) if need_target_grad else None
    return amp_dist, phase_dist, d_amp_o, d_phase_o, d_amp_t, d_phase_t


class _LocalPhaseFunction(torch.autograd.Function):
    """Fused forward and analytic backward: the coefficient gradients are formed in the forward
    pass while the spectra are at hand, and the backward is one adjoint STFT per input."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        input: torch.Tensor,
        target: torch.Tensor,
        plan: StftPlan,
        window: Optional[torch.Tensor],
        weight: Optional[torch.Tensor],
        phase_weight: float,
        amplitude_weight: float,
        phase_distance: str,
        phase_offset: float,
        eps: float,
        aggregate: str,
    ) -> torch.Tensor:
        need_o = ctx.needs_input_grad[0]
        need_t = ctx.needs_input_grad[1]
        fo = plan.forward(input, window)
        ft = plan.forward(target, window)
        amp, pha, da_o, dp_o, da_t, dp_t = _terms(fo, ft, phase_distance, phase_offset, eps, need_t)
        per_coeff = amplitude_weight * amp + phase_weight * pha
        if weight is not None:
            per_coeff = per_coeff * weight
        values = per_coeff.flatten(1).sum(1)
        scale = 1.0
        if aggregate == "mean":
            scale = 1.0 / per_coeff[0].numel()
            values = values * scale

        def coeff_grad(da: torch.Tensor, dp: torch.Tensor) -> torch.Tensor:
            g = amplitude_weight * da + phase_weight * dp
            if weight is not None:
                g = g * weight
            return g * scale if scale != 1.0 else g

        ctx.plan = plan
        ctx.shape = input.shape[-2:]
        ctx.save_for_backward(
            window,
            coeff_grad(da_o, dp_o) if need_o else None,
            coeff_grad(da_t, dp_t) if need_t else None,
        )
        return values

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_values: torch.Tensor):  # type: ignore[override]
        window, g_o, g_t = ctx.saved_tensors
        h, w = ctx.shape
        shape = (-1,) + (1,) * 5
        out = []
        for g in (g_o, g_t):
            out.append(None if g is None else ctx.plan.adjoint(g * grad_values.view(shape), window, h, w))
        return (out[0], out[1]) + (None,) * 9


def local_phase_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    window_size: Optional[int] = 16,
    stride: int = 4,
    phase_weight: float = 3.0,
    amplitude_weight: float = 1.0,
    frequency_weighting: WeightSpec = "linear",
    phase_distance: str = "wrapped",
    window: WindowSpec = "hann",
    reduction: str = "mean",
    aggregate: str = "mean",
    normalized: bool = True,
    transform: str = "2d",
    phase_offset: float = 0.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    r"""Local phase and amplitude loss on the short-time Fourier transforms of two images.

    .. math:: L = \operatorname{agg}_j\, W_j \big(\lambda\, d(P_{o,j}, P_{i,j})
              + \alpha\, |A_{o,j} - A_{i,j}|\big)

    where :math:`A` and :math:`P` are the amplitude and phase of every coefficient :math:`j` of
    :func:`stftblur.stft2d` (all patches, channels and frequencies), :math:`W_j` the frequency
    weight, :math:`\lambda` = ``phase_weight`` and :math:`\alpha` = ``amplitude_weight``. This
    is the paper's :math:`L_{freq}` (section 3.1) with ``aggregate="sum"``.

    Convention:
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
        window size. ``aggregate`` combines the coefficients of one image (mean or sum);
        ``reduction`` combines the images (``"none"`` gives shape (B,)).

        The phase of a coefficient is not differentiable at zero amplitude, where its gradient
        :math:`i F / |F|^2` diverges. The backward pass uses :math:`i F / \max(|F|^2,
        \epsilon^2)` instead: exact wherever :math:`|F| \ge \epsilon` (``eps``), tapering
        linearly to 0 below, so the gradient is finite everywhere (it is exactly 0 on an all-zero
        patch) and never larger than :math:`\lambda W / \epsilon` per coefficient. The forward
        value is exact. float16 and bfloat16 inputs (for example under ``torch.autocast``) are
        computed in float32, float64 is kept.

    Args:
        input: output images, shape (B, C, H, W), floating point.
        target: reference images of the same shape.
        window_size: STFT window side; None for one window over the whole image (global DFT).
        stride: step between windows.
        phase_weight: :math:`\lambda`, the weight of the phase term.
        amplitude_weight: :math:`\alpha`, the weight of the amplitude term.
        frequency_weighting: ``"linear"``, ``"product"``, ``"none"`` or a tensor.
        phase_distance: ``"wrapped"``, ``"raw"`` or ``"cosine"``.
        window: ``"hann"`` (periodic), ``"sqrt-hann"``, ``None`` or a tensor; see
            :func:`stftblur.make_window`.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` over the batch.
        aggregate: ``"mean"`` | ``"sum"`` over the coefficients of one image.
        normalized: divide the transform by the window's sum.
        transform: ``"2d"`` (:func:`stftblur.stft2d`) or ``"rows"`` (the authors' code: a 1-D
            FFT along the first ``window_size // 2`` rows of every un-windowed patch, first
            ``window_size // 2`` frequencies).
        phase_offset: :math:`\delta`, added to the real part before taking angles (``"raw"``).
        eps: amplitude below which the phase gradient is tapered.

    Returns:
        The loss: a scalar, or shape (B,) with ``reduction="none"``.

    Examples:
        >>> import torch
        >>> target = torch.rand(4, 1, 28, 28)
        >>> output = target.clone().requires_grad_()
        >>> local_phase_loss(output, target)
        tensor(0., grad_fn=<MeanBackward0>)
        >>> loss = local_phase_loss(output, target + 0.1 * torch.randn_like(target))
        >>> loss.backward()
        >>> output.grad.shape
        torch.Size([4, 1, 28, 28])
    """
    plan, win, weight, options = _prepare(
        input,
        target,
        window_size=window_size,
        stride=stride,
        phase_weight=phase_weight,
        amplitude_weight=amplitude_weight,
        frequency_weighting=frequency_weighting,
        phase_distance=phase_distance,
        window=window,
        reduction=reduction,
        aggregate=aggregate,
        normalized=normalized,
        transform=transform,
        phase_offset=phase_offset,
        eps=eps,
    )
    dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=input.device.type, enabled=False):
        values = _LocalPhaseFunction.apply(
            input.to(dtype),
            target.to(dtype),
            plan,
            win,
            weight,
            options["phase_weight"],
            options["amplitude_weight"],
            phase_distance,
            options["phase_offset"],
            options["eps"],
            aggregate,
        )
    return reduce(values, reduction)


def _prepare(input: torch.Tensor, target: torch.Tensor, **kw: Any):
    """Validate every argument and build the plan, window and weights (cached per shape)."""
    check_reduction(kw["reduction"])
    check_choice(kw["phase_distance"], "phase_distance", PHASE_DISTANCES)
    check_choice(kw["aggregate"], "aggregate", AGGREGATES)
    check_choice(kw["transform"], "transform", TRANSFORMS)
    options: Dict[str, float] = {
        "phase_weight": check_positive_float(kw["phase_weight"], "phase_weight", allow_zero=True),
        "amplitude_weight": check_positive_float(kw["amplitude_weight"], "amplitude_weight", allow_zero=True),
        "phase_offset": check_positive_float(kw["phase_offset"], "phase_offset", allow_zero=True),
        "eps": check_positive_float(kw["eps"], "eps"),
    }
    for name in ("input", "target"):
        t = input if name == "input" else target
        if isinstance(t, torch.Tensor) and t.dim() == 4 and kw["window_size"] is not None:
            if t.shape[-2] < kw["window_size"] or t.shape[-1] < kw["window_size"]:
                raise ValueError(
                    f"{name} of spatial size {tuple(t.shape[-2:])} is smaller than "
                    f"window_size={kw['window_size']}"
                )
    check_pair(input, target)
    h, w = input.shape[-2:]
    size, stride = resolve_window_size(kw["window_size"], kw["stride"], h, w)
    if kw["transform"] == "rows" and (size[0] < 2 or size[1] < 2):
        raise ValueError(f"transform='rows' needs window_size >= 2, got {kw['window_size']}")
    plan = StftPlan(size, stride, kw["transform"], bool(kw["normalized"]))
    dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    win = None
    if kw["transform"] == "2d" and kw["window"] is not None:
        win = make_window(kw["window"], size, dtype, input.device)
    weight = frequency_weights(kw["frequency_weighting"], size, kw["transform"])
    if weight is not None:
        if isinstance(kw["frequency_weighting"], torch.Tensor):
            expected = plan.coefficient_shape()
            try:
                torch.broadcast_shapes(weight.shape, expected)
            except RuntimeError:
                raise ValueError(
                    f"frequency_weighting tensor of shape {tuple(weight.shape)} does not broadcast "
                    f"to the coefficient grid {expected}"
                ) from None
        weight = weight.to(dtype=dtype, device=input.device)
    return plan, win, weight, options


PRESETS: Dict[str, Dict[str, Any]] = {
    # Section 3.1 of the paper, read literally: 2-D STFT with a Hann window, linear frequency
    # weighting, phase weighted higher than amplitude (lambda > 1; the released checkpoint's
    # 0.9 : 0.1 ratio), raw phase difference, coefficients summed.
    "paper-text": dict(
        window_size=16,
        stride=4,
        phase_weight=0.9,
        amplitude_weight=0.1,
        frequency_weighting="linear",
        phase_distance="raw",
        window="hann",
        aggregate="sum",
        normalized=False,
        transform="2d",
        phase_offset=0.0,
    ),
    # Exactly what the authors' released code computes (author-code-notes.md).
    "paper-code": dict(
        window_size=16,
        stride=4,
        phase_weight=0.9,
        amplitude_weight=0.1,
        frequency_weighting="product",
        phase_distance="raw",
        window=None,
        aggregate="sum",
        normalized=False,
        transform="rows",
        phase_offset=1e-6,
    ),
    # This project's defaults (see docs/losses.md for why).
    "default": dict(),
}


class LocalPhaseLoss(nn.Module):
    r"""Module form of :func:`local_phase_loss`; see there for the conventions.

    Args:
        Same as :func:`local_phase_loss`.

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

    def __init__(
        self,
        window_size: Optional[int] = 16,
        stride: int = 4,
        phase_weight: float = 3.0,
        amplitude_weight: float = 1.0,
        frequency_weighting: WeightSpec = "linear",
        phase_distance: str = "wrapped",
        window: WindowSpec = "hann",
        reduction: str = "mean",
        aggregate: str = "mean",
        normalized: bool = True,
        transform: str = "2d",
        phase_offset: float = 0.0,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        check_choice(phase_distance, "phase_distance", PHASE_DISTANCES)
        check_choice(aggregate, "aggregate", AGGREGATES)
        check_choice(transform, "transform", TRANSFORMS)
        if isinstance(frequency_weighting, str):
            check_choice(frequency_weighting, "frequency_weighting", FREQUENCY_WEIGHTINGS)
        self.window_size = window_size
        self.stride = stride
        self.phase_weight = phase_weight
        self.amplitude_weight = amplitude_weight
        self.frequency_weighting = frequency_weighting
        self.phase_distance = phase_distance
        self.window = window
        self.reduction = reduction
        self.aggregate = aggregate
        self.normalized = normalized
        self.transform = transform
        self.phase_offset = phase_offset
        self.eps = eps

    _CONFIG_KEYS = (
        "window_size",
        "stride",
        "phase_weight",
        "amplitude_weight",
        "frequency_weighting",
        "phase_distance",
        "window",
        "reduction",
        "aggregate",
        "normalized",
        "transform",
        "phase_offset",
        "eps",
    )

    @property
    def config(self) -> Dict[str, Any]:
        """The constructor arguments, so that ``LocalPhaseLoss(**loss.config)`` is the same loss."""
        return {k: getattr(self, k) for k in self._CONFIG_KEYS}

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "LocalPhaseLoss":
        """A loss configured as ``"paper-text"``, ``"paper-code"`` or ``"default"``.

        ``overrides`` replace single arguments of the preset, e.g. ``window_size=8``.

        Examples:
            >>> LocalPhaseLoss.from_preset("paper-text").window
            'hann'
        """
        check_choice(name, "preset", tuple(PRESETS))
        return cls(**{**PRESETS[name], **overrides})

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return local_phase_loss(input, target, **self.config)

    def extra_repr(self) -> str:
        return ", ".join(
            f"{k}={v!r}" if not isinstance(v, torch.Tensor) else f"{k}=<tensor {tuple(v.shape)}>"
            for k, v in self.config.items()
        )


def fourier_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    phase_weight: float = 1.0,
    amplitude_weight: float = 1.0,
    frequency_weighting: WeightSpec = "linear",
    phase_distance: str = "wrapped",
    reduction: str = "mean",
    aggregate: str = "mean",
    normalized: bool = True,
) -> torch.Tensor:
    r"""Global Fourier amplitude + phase loss (one window covering the whole image).

    The "DFT+SSIM" row of the paper's Table 1 and the Fourier-space loss of Fuoli et al. (2021):
    :func:`local_phase_loss` with ``window_size=None`` and no window (boxcar).

    Convention:
        As :func:`local_phase_loss`; equal amplitude and phase weights by default, as Fuoli et
        al. With ``normalized=True`` the DFT is divided by H * W.

    Examples:
        >>> import torch
        >>> x = torch.rand(2, 1, 28, 28)
        >>> fourier_loss(x, x)
        tensor(0.)
    """
    return local_phase_loss(
        input,
        target,
        window_size=None,
        phase_weight=phase_weight,
        amplitude_weight=amplitude_weight,
        frequency_weighting=frequency_weighting,
        phase_distance=phase_distance,
        window=None,
        reduction=reduction,
        aggregate=aggregate,
        normalized=normalized,
    )


class FourierLoss(nn.Module):
    """Module form of :func:`fourier_loss`.

    Examples:
        >>> import torch
        >>> FourierLoss()(torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28)).shape
        torch.Size([])
    """

    def __init__(
        self,
        phase_weight: float = 1.0,
        amplitude_weight: float = 1.0,
        frequency_weighting: WeightSpec = "linear",
        phase_distance: str = "wrapped",
        reduction: str = "mean",
        aggregate: str = "mean",
        normalized: bool = True,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.kwargs = dict(
            phase_weight=phase_weight,
            amplitude_weight=amplitude_weight,
            frequency_weighting=frequency_weighting,
            phase_distance=phase_distance,
            reduction=reduction,
            aggregate=aggregate,
            normalized=normalized,
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return fourier_loss(input, target, **self.kwargs)
