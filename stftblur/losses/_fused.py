"""The fused forward pass of the local-phase loss: its constants, the per-coefficient terms and
the chunked pass over a batch that yields the values and the image gradients together.

:mod:`stftblur.losses._ops` enters this as one PyTorch custom operator; the public functions are
in :mod:`stftblur.losses.local_phase`. ``_coefficient_terms`` and ``StftPlan.adjoint`` are the
pure-PyTorch reference that the compiled kernels (:mod:`stftblur.losses._compiled`) are tested
against; ``kernels="reference"`` selects them on every device.
"""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import torch

from stftblur._checks import check_choice
from stftblur.losses import _compiled
from stftblur.losses.config import FREQUENCY_WEIGHTINGS, WeightSpec
from stftblur.transforms import StftPlan, WindowSpec, make_window

__all__ = ["frequency_weights"]

#: Which implementation of the per-coefficient work a loss call uses: ``"auto"`` the compiled
#: CPU kernels where they apply (float32 on the CPU, a C compiler found), else the reference;
#: ``"reference"`` the pure-PyTorch path always.
KERNELS = ("auto", "reference")


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


def check_tensor_options(plan: StftPlan, window: WindowSpec, weighting: WeightSpec) -> None:
    """A tensor window or frequency weighting against this plan's window and coefficient grid
    (shapes only, before the operator runs)."""
    if isinstance(window, torch.Tensor) and plan.kind == "2d":
        make_window(window, plan.window_size, window.dtype, window.device)
    if isinstance(weighting, torch.Tensor):
        expected = plan.coefficient_shape()
        try:
            torch.broadcast_shapes(weighting.shape, expected)
        except RuntimeError:
            raise ValueError(
                f"frequency_weighting tensor of shape {tuple(weighting.shape)} does not broadcast "
                f"to the coefficient grid {expected}"
            ) from None


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
    if weight is None:
        weight = torch.ones((), dtype=dtype)
    w_val = (plan.to_internal(weight.to(dtype=dtype, device=device)) * scale).contiguous()
    w_grad = plan.adjoint_scale(dtype, device) * w_val
    return win, w_val, (w_grad * amplitude_weight).contiguous(), (w_grad * phase_weight).contiguous()


# Named windows and weightings only (a tensor option is rebuilt on every call); lru_cache is
# thread-safe (two threads may both build an entry, and get equal tensors).
_cached_constants = functools.lru_cache(maxsize=64)(_constants)


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


def _adjoint(plan: StftPlan, grad: torch.Tensor, window: Optional[torch.Tensor], h: int, w: int,
             compiled: bool) -> torch.Tensor:
    """plan.adjoint, with the window and overlap-add compiled where available."""
    out = _compiled.overlap_add(plan.adjoint_patches(grad), window, h, w, plan.stride) if compiled else None
    return out if out is not None else plan.adjoint(grad, window, h, w)


def _stack_sides(per_image: int) -> bool:
    """Whether a CPU chunk of images of ``per_image`` coefficients each puts both sides through
    one forward transform (one call, one allocation), with as many coefficients a chunk as one
    side alone would have: for small images (at least 8 pairs a chunk). Large ones keep a
    transform a side, since a stacked chunk would hold half as many images."""
    return 16 * per_image <= _CPU_CHUNK_COEFFS


def fused_forward(
    input: torch.Tensor,
    target: torch.Tensor,
    window: Optional[torch.Tensor],
    weighting: Optional[torch.Tensor],
    window_name: str,
    weighting_name: str,
    window_size: Tuple[int, int],
    stride: int,
    transform: str,
    normalized: bool,
    aggregate: str,
    phase_weight: float,
    amplitude_weight: float,
    phase_distance: str,
    phase_offset: float,
    eps: float,
    need_input_grad: bool,
    need_target_grad: bool,
    kernels: str,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Per-image values (B,) and the image gradients (B, C, H, W) of the two sides asked for.

    ``input`` and ``target`` are (B, C, H, W) in the computation dtype (float32 or float64). A
    tensor ``window`` / ``weighting`` replaces the named one (``window_name`` is ``"none"`` for
    no window). The batch is processed in cache-sized chunks of images: for each, both spectra,
    the loss and, while the spectra are at hand, the gradient of every coefficient, which one
    adjoint transform (inverse FFT, window, overlap-add) turns into the image gradient. On the
    CPU, small images (at least 8 pairs a chunk) have both sides of a chunk in one forward
    transform: half the calls and large allocations (fewer page faults, evals/compile_gap.py).
    """
    plan = StftPlan((int(window_size[0]), int(window_size[1])), int(stride), transform, normalized)
    b, c, h, w = input.shape
    k, l = plan.grid(h, w)
    p, q = plan.coefficient_shape()
    per_image = k * l * p * q
    scale = 1.0 / (c * per_image) if aggregate == "mean" else 1.0
    win_spec: WindowSpec = window if window is not None else (None if window_name == "none" else window_name)
    weight_spec: WeightSpec = weighting if weighting is not None else weighting_name
    args = (plan, win_spec, weight_spec, input.dtype, input.device, scale, amplitude_weight, phase_weight)
    if window is not None or weighting is not None:
        win, w_val, w_amp, w_ph = _constants(*args)
    else:
        win, w_val, w_amp, w_ph = _cached_constants(*args)
    xo = input.reshape(b * c, h, w)
    xt = target.reshape(b * c, h, w)
    on_cpu = input.device.type == "cpu"
    stack = on_cpu and _stack_sides(per_image)
    step = max(1, _CPU_CHUNK_COEFFS // (per_image * (2 if stack else 1))) if on_cpu else b * c
    compiled = kernels == "auto"
    n = b * c
    values = xo.new_empty(n)
    grad_o = torch.empty_like(xo) if need_input_grad else None
    grad_t = torch.empty_like(xt) if need_target_grad else None
    for i in range(0, n, step):
        j = min(i + step, n)
        if torch.equal(xo[i:j], xt[i:j]):
            # Exactly 0 with a zero (sub)gradient; computing it would leave FFT rounding.
            values[i:j] = 0.0
            for g in (grad_o, grad_t):
                if g is not None:
                    g[i:j] = 0.0
            continue
        if stack:
            f = plan.forward(torch.cat((xo[i:j], xt[i:j])), win)
            fo, ft = f[: j - i], f[j - i:]
        else:
            fo = plan.forward(xo[i:j], win)
            ft = plan.forward(xt[i:j], win)
        terms = (fo, ft, w_val, w_amp, w_ph, phase_weight, amplitude_weight, phase_distance,
                 phase_offset, eps, need_input_grad, need_target_grad)
        out = _compiled.coefficient_terms(*terms) if compiled else None
        v, go, gt = out or _coefficient_terms(*terms)
        values[i:j] = v
        if go is not None:
            grad_o[i:j] = _adjoint(plan, go, win, h, w, compiled)  # type: ignore[index]
        if gt is not None:
            grad_t[i:j] = _adjoint(plan, gt, win, h, w, compiled)  # type: ignore[index]
    return (
        values.view(b, c).sum(1),
        None if grad_o is None else grad_o.view(b, c, h, w),
        None if grad_t is None else grad_t.view(b, c, h, w),
    )


def scale_gradients(
    grad_values: torch.Tensor, grad_input: Optional[torch.Tensor], grad_target: Optional[torch.Tensor]
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The backward pass: the saved image gradients times the incoming gradient of each value."""
    g = grad_values.reshape(-1, 1, 1, 1)
    return (
        None if grad_input is None else grad_input * g,
        None if grad_target is None else grad_target * g,
    )
