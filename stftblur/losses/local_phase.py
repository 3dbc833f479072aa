"""LocalPhaseLoss: L1 on local (STFT) amplitude and phase, weighted towards high frequencies.

The options are those of :class:`~stftblur.losses.LocalPhaseConfig`; :class:`FourierLoss` is
the variant with one window over the whole image.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from typing import Any, Dict, Iterator, Optional, Tuple

import torch
from torch import nn

from stftblur._checks import check_choice, check_pair, check_reduction, reduce
from stftblur.losses import _compiled
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
from stftblur.transforms import StftPlan, WindowSpec, make_window, resolve_window_size

__all__ = ["FourierLoss", "LocalPhaseLoss", "fourier_loss", "frequency_weights", "local_phase_loss"]


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


# Coefficients per chunk on the CPU: two planes of this many float32 values stay in the L2/L3
# caches, which makes every elementwise pass several times faster than over the whole batch.
_CPU_CHUNK_COEFFS = 1 << 18
_TINY_AMPLITUDE = 1e-12


def _planes(z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Contiguous real and imaginary planes of a complex tensor (strided views are not
    vectorised by TensorIterator; one copy makes the ~30 passes that follow several times faster)."""
    r = torch.view_as_real(z)
    return r[..., 0].contiguous(), r[..., 1].contiguous()


def _coefficient_terms(
    fo: torch.Tensor,
    ft: torch.Tensor,
    w_val: torch.Tensor,
    w_amp: torch.Tensor,
    w_ph: torch.Tensor,
    phase_weight: float,
    amplitude_weight: float,
    phase_distance: str,
    phase_offset: float,
    eps: float,
    need_o: bool,
    need_t: bool,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Per-image values and the coefficient gradients, for one chunk of spectra.

    ``fo`` and ``ft`` are complex (n, ..., P, Q). Returns (values (n,), grad_o, grad_t), the
    gradients complex and already multiplied by ``w_amp`` / ``w_ph`` (weight times adjoint factor
    times the amplitude / phase weight). Works
    on contiguous real planes with in-place operations: every pass over the chunk costs one read
    and one write of a cache-resident plane.
    """
    n = fo.shape[0]
    a, b = _planes(fo)
    c, d = _planes(ft)
    # Amplitudes and their distance.
    po = a * a
    po.addcmul_(b, b)
    pt = c * c
    pt.addcmul_(d, d)
    ao = po.sqrt()
    at = pt.sqrt()
    s_a = ao - at
    per = s_a.abs()
    if amplitude_weight != 1.0:
        per.mul_(amplitude_weight)
    s_a.sign_()
    # Phase distance and the sign/size of its derivative with respect to the angle.
    if phase_distance == "raw":
        if phase_offset:
            # F + delta adds the complex number delta + 0i, as the authors' code does: this
            # also turns an imaginary part of -0.0 into +0.0 (angle +pi, not -pi, on the
            # negative real axis), which changes the raw distance by 2 pi there.
            a_p, c_p = a + phase_offset, c + phase_offset
            po_p = a_p.square().addcmul_(b, b)
            pt_p = c_p.square().addcmul_(d, d)
        else:
            # "+ 0.0" turns -0.0 into +0.0 so that a zero coefficient has angle 0, not pi.
            a_p, c_p = a + 0.0, c + 0.0
            po_p, pt_p = po, pt
        dphi = torch.atan2(b + 0.0, a_p).sub_(torch.atan2(d + 0.0, c_p))
        per.add_(dphi.abs(), alpha=phase_weight)
        g = dphi.sign_()
    else:
        a_p, c_p = a, c
        # Two separately rounded products (not addcmul, which may fuse them): then im is exactly
        # 0 where the two phases are exactly equal or opposite, and so is the subgradient there.
        re = a * c
        re.add_(b * d).add_(0.0)  # -0.0 -> +0.0: atan2(0, -0.0) would be pi, not 0
        im = b * c
        im.sub_(a * d)
        po_p, pt_p = po, pt
        if phase_distance == "wrapped":
            per.add_(torch.atan2(im.abs(), re), alpha=phase_weight)
            g = im.sign_()
        else:  # cosine: 1 - cos(d), whose derivative in d is sin(d)
            prod = ao * at
            has_phase = prod > 0
            norm = prod.clamp_min_(_TINY_AMPLITUDE * _TINY_AMPLITUDE)
            per.add_(re.div_(norm).neg_().add_(1.0).mul_(has_phase), alpha=phase_weight)
            g = im.div_(norm).mul_(has_phase)
    values = (per.reshape(n, -1, per.shape[-2] * per.shape[-1]) @ w_val.reshape(-1)).sum(1)

    def grad(x: torch.Tensor, y: torch.Tensor, amp: torch.Tensor, p_ph: torch.Tensor, sign: float) -> torch.Tensor:
        # d/dF [alpha |A_o - A_t| + lambda phase] = F * (alpha s_a / |F| + i lambda g / max(|F|^2, eps^2))
        ca = s_a / amp.clamp_min(_TINY_AMPLITUDE)
        ca.mul_(w_amp)
        cp = g / p_ph.clamp_min(eps * eps)
        cp.mul_(w_ph)
        if sign < 0:
            ca.neg_()
            cp.neg_()
        gr = x * ca
        gr.addcmul_(y, cp, value=-1.0)
        gi = y * ca
        gi.addcmul_(x, cp)
        return torch.complex(gr, gi)

    go = grad(a_p if phase_offset else a, b, ao, po_p, 1.0) if need_o else None
    gt = grad(c_p if phase_offset else c, d, at, pt_p, -1.0) if need_t else None
    return values, go, gt


# Below this many coefficients (both images' spectra together, counted once) a CPU call runs on
# one thread: there a second thread gains under 10% on a quiet 2-core machine (the paper-code
# preset at 50x1x28x28, 51,200 coefficients: 1.67 ms on one thread, 1.60 ms on two), and on a
# busy machine every parallel region waits for it. From 115,200 coefficients on (the default
# configuration at 50x1x28x28: 7.00 ms against 5.62 ms) two threads win by 20% or more.
# Measured with `python evals/bench_loss.py --thread-sweep` (evals/results/bench_loss_threads.json).
_SINGLE_THREAD_BELOW = 1 << 16


@contextlib.contextmanager
def _threads_for(device: torch.device, coefficients: int) -> Iterator[None]:
    """Run the block on one intra-op thread when the problem is small (CPU only; not while
    torch.compile traces, where the thread calls would break the graph)."""
    if torch.compiler.is_compiling():
        yield
        return
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1 or coefficients >= _SINGLE_THREAD_BELOW:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _adjoint(plan: StftPlan, grad: torch.Tensor, window: Optional[torch.Tensor], h: int, w: int) -> torch.Tensor:
    """plan.adjoint, with the window and overlap-add compiled where available."""
    out = _compiled.overlap_add(plan.adjoint_patches(grad), window, h, w, plan.stride)
    return out if out is not None else plan.adjoint(grad, window, h, w)


_SECOND_ORDER_MESSAGE = (
    "local_phase_loss does not support second-order gradients (backward with create_graph=True, "
    "as in gradient penalties or Hessian-vector products): its gradient is computed analytically "
    "in the forward pass and is not itself differentiable. Compute the gradient of this loss "
    "without create_graph=True, or use a differentiable formulation (for example "
    "stftblur.stft2d with torch.angle and torch.abs) for that term."
)


class _LocalPhaseFunction(torch.autograd.Function):
    """Fused forward and analytic backward.

    The batch is processed in cache-sized chunks of images. For each chunk the forward pass
    computes both spectra, the loss and, while the spectra are at hand, the gradient of every
    coefficient, which one adjoint transform (inverse FFT, window, overlap-add) turns into the
    image gradient. Only that image gradient is kept for the backward pass, which scales it.

    On the CPU in float32 the coefficient terms and the windowed overlap-add run as compiled
    kernels where a C compiler is available (:mod:`stftblur.losses._compiled`);
    ``_coefficient_terms`` and ``StftPlan.adjoint`` are the pure-PyTorch reference they are
    tested against. The backward pass is not differentiable: ``create_graph=True`` raises.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        input: torch.Tensor,
        target: torch.Tensor,
        plan: StftPlan,
        window: Optional[torch.Tensor],
        w_val: torch.Tensor,
        w_amp: torch.Tensor,
        w_ph: torch.Tensor,
        phase_weight: float,
        amplitude_weight: float,
        phase_distance: str,
        phase_offset: float,
        eps: float,
    ) -> torch.Tensor:
        need_o, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        b, c, h, w = input.shape
        k, l = plan.grid(h, w)
        p, q = plan.coefficient_shape()
        xo = input.reshape(b * c, h, w)
        xt = target.reshape(b * c, h, w)
        per_image = k * l * p * q
        step = b * c if input.device.type != "cpu" else max(1, _CPU_CHUNK_COEFFS // per_image)
        with _threads_for(input.device, b * c * per_image):
            values, grad_o, grad_t = _LocalPhaseFunction._run(
                xo, xt, plan, window, w_val, w_amp, w_ph, phase_weight, amplitude_weight, phase_distance,
                phase_offset, eps, need_o, need_t, step)
        ctx.save_for_backward(
            grad_o.view(b, c, h, w) if grad_o is not None else None,
            grad_t.view(b, c, h, w) if grad_t is not None else None,
        )
        return values.view(b, c).sum(1)

    @staticmethod
    def _run(xo, xt, plan, window, w_val, w_amp, w_ph, phase_weight, amplitude_weight, phase_distance,
             phase_offset, eps, need_o, need_t, step):  # type: ignore[no-untyped-def]
        """Values (n,) and image gradients of (n, h, w) image pairs, ``step`` images at a time."""
        n, h, w = xo.shape
        values = xo.new_empty(n)
        grad_o = torch.empty_like(xo) if need_o else None
        grad_t = torch.empty_like(xt) if need_t else None
        for i in range(0, n, step):
            j = min(i + step, n)
            if not torch.compiler.is_compiling() and torch.equal(xo[i:j], xt[i:j]):
                # Exactly 0 with a zero (sub)gradient; computing it would leave FFT rounding.
                # (Skipped under torch.compile, where the data-dependent branch breaks the graph.)
                values[i:j] = 0.0
                for g in (grad_o, grad_t):
                    if g is not None:
                        g[i:j] = 0.0
                continue
            fo = plan.forward(xo[i:j], window)
            ft = plan.forward(xt[i:j], window)
            terms = (fo, ft, w_val, w_amp, w_ph, phase_weight, amplitude_weight, phase_distance,
                     phase_offset, eps, need_o, need_t)
            v, go, gt = _compiled.coefficient_terms(*terms) or _coefficient_terms(*terms)
            values[i:j] = v
            if go is not None:
                grad_o[i:j] = _adjoint(plan, go, window, h, w)  # type: ignore[index]
            if gt is not None:
                grad_t[i:j] = _adjoint(plan, gt, window, h, w)  # type: ignore[index]
        return values, grad_o, grad_t

    @staticmethod
    def backward(ctx: Any, grad_values: torch.Tensor):  # type: ignore[override]
        if torch.is_grad_enabled():
            raise RuntimeError(_SECOND_ORDER_MESSAGE)
        grad_o, grad_t = ctx.saved_tensors
        g = grad_values.view(-1, 1, 1, 1)
        saved = grad_o if grad_o is not None else grad_t
        with _threads_for(g.device, 0 if saved is None else saved.numel()):
            return (
                grad_o * g if grad_o is not None else None,
                grad_t * g if grad_t is not None else None,
            ) + (None,) * 10



# The positional order of the options before they became keyword-only (accepted, with a
# DeprecationWarning, for one release).
_LEGACY_ORDER = (
    "window_size", "stride", "phase_weight", "amplitude_weight", "frequency_weighting", "phase_distance",
    "window", "reduction", "aggregate", "normalized", "transform", "phase_offset", "eps",
)
_LEGACY_FOURIER_ORDER = (
    "phase_weight", "amplitude_weight", "frequency_weighting", "phase_distance", "reduction", "aggregate", "normalized",
)
_DEFAULT = LocalPhaseConfig()


def _legacy_positional(args: Tuple[Any, ...], order: Tuple[str, ...], kwargs: Dict[str, Any], where: str) -> None:
    """Move options passed by position into ``kwargs`` (deprecated)."""
    if not args:
        return
    if len(args) > len(order):
        raise TypeError(f"{where} takes at most {len(order)} options by position, got {len(args)}")
    names = order[: len(args)]
    twice = sorted(set(names) & set(kwargs))
    if twice:
        raise TypeError(f"{where} got multiple values for {twice}")
    warnings.warn(
        f"passing {', '.join(names)} to {where} by position is deprecated; pass them by keyword "
        f"(e.g. {names[0]}={args[0]!r})",
        DeprecationWarning,
        stacklevel=3,
    )
    kwargs.update(zip(names, args))


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
    *args: Any,
    config: Optional[LocalPhaseConfig] = None,
    reduction: str = "mean",
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
        raises a ``RuntimeError``. On the CPU in float32 the per-coefficient work runs in
        kernels compiled on first use where a C compiler is available, and otherwise in pure
        PyTorch, with the same results within float32 rounding (``docs/benchmarks.md``).

    Args:
        input: output images, shape (B, C, H, W), floating point.
        target: reference images of the same shape.
        config: a :class:`~stftblur.losses.LocalPhaseConfig` (default: its defaults).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` over the batch.
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
    _legacy_positional(args, _LEGACY_ORDER, options, "local_phase_loss")
    if "reduction" in options:  # a legacy positional reduction
        reduction = options.pop("reduction")
    cfg = _resolve(config, options, _DEFAULT)
    return _local_phase_loss(input, target, cfg, reduction)


local_phase_loss.__signature__ = options_signature(  # type: ignore[attr-defined]
    tuple(inspect.signature(local_phase_loss).parameters.values())[:2],
    (
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="mean"),
    ),
)


def _local_phase_loss(input: torch.Tensor, target: torch.Tensor, cfg: LocalPhaseConfig, reduction: str) -> torch.Tensor:
    """The loss for a validated config: check the images, build plan and constants, run."""
    check_reduction(reduction)
    check_pair(input, target, min_size=cfg.window_size)
    h, w = input.shape[-2:]
    size, stride = resolve_window_size(cfg.window_size, cfg.stride, h, w)
    plan = StftPlan(size, stride, cfg.transform, cfg.normalized)
    dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
    b, c, h, w = input.shape
    k, l = plan.grid(h, w)
    p, q = plan.coefficient_shape()
    scale = 1.0 / (c * k * l * p * q) if cfg.aggregate == "mean" else 1.0
    phase_weight, amplitude_weight = float(cfg.phase_weight), float(cfg.amplitude_weight)
    args = (plan, cfg.window, cfg.frequency_weighting, dtype, input.device, scale, amplitude_weight, phase_weight)
    if isinstance(cfg.window, torch.Tensor) or isinstance(cfg.frequency_weighting, torch.Tensor):
        win, w_val, w_amp, w_ph = _constants(*args)
    else:
        win, w_val, w_amp, w_ph = _cached_constants(*args)
    with torch.autocast(device_type=input.device.type, enabled=False):
        values = _LocalPhaseFunction.apply(
            input.to(dtype),
            target.to(dtype),
            plan,
            win,
            w_val,
            w_amp,
            w_ph,
            phase_weight,
            amplitude_weight,
            cfg.phase_distance,
            float(cfg.phase_offset),
            float(cfg.eps),
        )
    return reduce(values, reduction)


def _constants(
    plan: StftPlan,
    window: WindowSpec,
    weighting: WeightSpec,
    dtype: torch.dtype,
    device: torch.device,
    scale: float,
    amplitude_weight: float,
    phase_weight: float,
) -> Tuple[Optional[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Effective window and the per-coefficient weights of the value and of the two gradient
    terms, in the plan's internal layout, with every constant factor folded in."""
    win = None
    if plan.kind == "2d" and window is not None:
        win = make_window(window, plan.window_size, dtype, device)
    win = plan.effective_window(win, dtype, device)
    weight = frequency_weights(weighting, plan.window_size, plan.kind)
    if isinstance(weighting, torch.Tensor):
        expected = plan.coefficient_shape()
        try:
            torch.broadcast_shapes(weighting.shape, expected)
        except RuntimeError:
            raise ValueError(
                f"frequency_weighting tensor of shape {tuple(weighting.shape)} does not broadcast "
                f"to the coefficient grid {expected}"
            ) from None
    if weight is None:
        weight = torch.ones((), dtype=dtype)
    w_val = (plan.to_internal(weight.to(dtype=dtype, device=device)) * scale).contiguous()
    w_grad = plan.adjoint_scale(dtype, device) * w_val
    return win, w_val, (w_grad * amplitude_weight).contiguous(), (w_grad * phase_weight).contiguous()


_cached_constants = functools.lru_cache(maxsize=64)(_constants)


class LocalPhaseLoss(nn.Module):
    r"""Module form of :func:`local_phase_loss`; see there for the conventions.

    Args:
        config: a :class:`~stftblur.losses.LocalPhaseConfig` (default: its defaults).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` over the batch.
        **options: single options of :class:`~stftblur.losses.LocalPhaseConfig`; they replace
            those of ``config``. Validated here, once.

    Attributes:
        options: the :class:`~stftblur.losses.LocalPhaseConfig` in use; every option is also an
            attribute (``loss.window_size``).
        reduction: the batch reduction.
        config: the options and ``reduction`` as a dict, so that ``type(loss)(**loss.config)``
            is the same loss.

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
    _legacy_order: Tuple[str, ...] = _LEGACY_ORDER

    def __init__(self, *args: Any, config: Optional[LocalPhaseConfig] = None, reduction: str = "mean",
                 **options: Any) -> None:
        super().__init__()
        _legacy_positional(args, self._legacy_order, options, type(self).__name__)
        if "reduction" in options:
            reduction = options.pop("reduction")
        check_reduction(reduction)
        self.options = self._make_options(config, options)
        self.reduction = reduction

    def _make_options(self, config: Optional[LocalPhaseConfig], options: Dict[str, Any]) -> LocalPhaseConfig:
        return _resolve(config, options, self.default_options)

    @property
    def config(self) -> Dict[str, Any]:
        """The options and ``reduction``, so that ``type(loss)(**loss.config)`` is the same loss."""
        options = self.options.to_dict()
        # reduction in its place of the original signature (the repr keeps its order)
        values = {**options, "reduction": self.reduction}
        order = [n for n in _LEGACY_ORDER if n in values] + [n for n in values if n not in _LEGACY_ORDER]
        return {n: values[n] for n in order}

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "LocalPhaseLoss":
        """A loss configured as ``"paper-text"``, ``"paper-code"`` or ``"default"``.

        ``overrides`` replace single options of the preset, e.g. ``window_size=8``
        (``reduction`` too).

        Examples:
            >>> LocalPhaseLoss.from_preset("paper-text").window
            'hann'
        """
        check_choice(name, "preset", tuple(PRESETS))
        reduction = overrides.pop("reduction", "mean")
        return cls(config=LocalPhaseConfig.from_preset(name, **overrides), reduction=reduction)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _local_phase_loss(input, target, self.options, self.reduction)

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
        amplitude = _local_phase_loss(input, target, self.options.replace(phase_weight=0.0), self.reduction)
        phase = _local_phase_loss(input, target, self.options.replace(amplitude_weight=0.0), self.reduction)
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
    *args: Any,
    config: Optional[LocalPhaseConfig] = None,
    reduction: str = "mean",
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
    _legacy_positional(args, _LEGACY_FOURIER_ORDER, options, "fourier_loss")
    if "reduction" in options:
        reduction = options.pop("reduction")
    cfg = LocalPhaseConfig.fourier(**options) if config is None else _check_fourier(config).replace(**options)
    return _local_phase_loss(input, target, cfg, reduction)


fourier_loss.__signature__ = options_signature(  # type: ignore[attr-defined]
    tuple(inspect.signature(fourier_loss).parameters.values())[:2],
    (
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="mean"),
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
    _legacy_order = _LEGACY_FOURIER_ORDER

    def __init__(self, *args: Any, config: Optional[LocalPhaseConfig] = None, reduction: str = "mean",
                 **options: Any) -> None:
        super().__init__(*args, config=config, reduction=reduction, **options)

    def _make_options(self, config: Optional[LocalPhaseConfig], options: Dict[str, Any]) -> LocalPhaseConfig:
        if config is None:
            return LocalPhaseConfig.fourier(**options)
        return _check_fourier(config).replace(**options)



def _module_signature(defaults: LocalPhaseConfig, exclude: Tuple[str, ...] = ()) -> inspect.Signature:
    trailing = (
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="mean"),
    )
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return options_signature((self,), trailing, defaults=defaults, exclude=exclude)


# help() and the API reference show every option of the modules (their __init__ takes **options).
LocalPhaseLoss.__init__.__signature__ = _module_signature(_DEFAULT)  # type: ignore[attr-defined]
FourierLoss.__init__.__signature__ = _module_signature(  # type: ignore[attr-defined]
    LocalPhaseConfig.fourier(), exclude=("window_size", "stride", "window")
)
