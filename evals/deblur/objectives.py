"""Training objectives of the deblurring benchmark: L1 plus ``weight`` times one auxiliary term.

The auxiliary terms are the library's losses (``LocalPhaseLoss``, ``SSIMLoss``), focal
frequency loss, and the variants of the loss-design study, written here in plain PyTorch on
:func:`stftblur.stft2d` (autograd; finite gradients at zero amplitude because every term is
built from ``|F|`` and ``Re(F_o conj F_t)``, whose derivatives are bounded).

The STFT variants use the library's default transform (16x16 periodic Hann window, stride 4,
``normalized=True`` so amplitudes are in pixel units) and the linear radial weight W (0 at DC, 1
at the highest frequency). With ``A`` the amplitudes and ``dphi`` the phase difference:

- ``lpl``: ``LocalPhaseLoss(**options)``: mean W (lambda |dphi| + |A_o - A_t|), lambda = 3;
  ``lpl-lam<L>`` with lambda = L; ``lpl-eps<E>`` with ``eps=E``: the same value, but the phase
  gradient iF/max(|F|^2, E^2) tapers below amplitude E instead of 1e-4, so that the weak
  coefficients, whose phase the blur has randomised, pull less; ``lpl-fw<W>`` with
  ``frequency_weighting=W`` (``none``: every frequency counts alike; ``product``: u*v);
  ``lpl-unnorm`` with ``normalized=False`` (amplitudes summed over the window, not averaged: the
  amplitude part weighs window-sum times more against the phase part).
- ``prod``: mean W (|A_o - A_t| + lambda A_o A_t (1 - cos dphi) / mean(A_t)): the phase part of
  ``|F_o - F_t|^2 = (A_o - A_t)^2 + 2 A_o A_t (1 - cos dphi)``, so a coefficient's phase counts
  in proportion to the amplitude it carries; divided by the image's mean target amplitude
  (not differentiated) to stay in amplitude units.
- ``complex``: mean W |F_o - F_t|: amplitude and phase together, L1 on the complex coefficient.
- ``mr-<variant>``: the mean of the variant at windows 8, 16, 32 (strides 2, 4, 8).
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

import stftblur
from stftblur.losses.local_phase import frequency_weights

Term = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MULTI_RES: Tuple[Tuple[int, int], ...] = ((8, 2), (16, 4), (32, 8))


def stft_variant(kind: str, window_size: int = 16, stride: int = 4, phase_weight: float = 3.0) -> Term:
    """One of the plain-PyTorch variants ``prod`` or ``complex`` (see the module docstring)."""
    if kind not in ("prod", "complex"):
        raise ValueError(f"kind must be 'prod' or 'complex', got {kind!r}")

    def term(o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        fo = stftblur.stft2d(o, window_size, stride, normalized=True)
        ft = stftblur.stft2d(t, window_size, stride, normalized=True)
        w = frequency_weights("linear", (window_size, window_size)).to(o.device, fo.real.dtype)
        if kind == "complex":
            per = (fo - ft).abs()
        else:
            ao, at = fo.abs(), ft.abs()
            scale = at.mean(dim=(1, 2, 3, 4, 5), keepdim=True).detach().clamp_min(1e-8)
            phase = (ao * at - (fo * ft.conj()).real) / scale
            per = (ao - at).abs() + phase_weight * phase
        return (per * w).mean()

    return term


def multi_resolution(make: Callable[[int, int], Term]) -> Term:
    """The mean of ``make(window, stride)`` over :data:`MULTI_RES`."""
    terms = [make(w, s) for w, s in MULTI_RES]
    return lambda o, t: sum(f(o, t) for f in terms) / len(terms)


def make_term(name: str) -> Term:
    """The auxiliary term called ``name``: ssim, ffl, lpl, lpl-lam<L>, lpl-eps<E>, lpl-fw<W>, lpl-unnorm,
    prod, complex, mr-<...>."""
    if name == "ssim":
        return stftblur.SSIMLoss()
    if name == "ffl":
        from focal_frequency_loss import FocalFrequencyLoss

        return FocalFrequencyLoss()
    if name.startswith("mr-"):
        base = name[3:]
        if base == "lpl":
            return multi_resolution(lambda w, s: stftblur.LocalPhaseLoss(window_size=w, stride=s))
        return multi_resolution(lambda w, s: stft_variant(base, w, s))
    if name == "lpl":
        return stftblur.LocalPhaseLoss()
    if name.startswith("lpl-lam"):
        return stftblur.LocalPhaseLoss(phase_weight=float(name[len("lpl-lam"):]))
    if name.startswith("lpl-eps"):  # where the phase gradient starts to taper (default 1e-4)
        return stftblur.LocalPhaseLoss(eps=float(name[len("lpl-eps"):]))
    if name.startswith("lpl-fw"):  # the frequency weighting (default linear)
        return stftblur.LocalPhaseLoss(frequency_weighting=name[len("lpl-fw"):])
    if name == "lpl-unnorm":  # amplitudes summed over the window (default: divided by its sum)
        return stftblur.LocalPhaseLoss(normalized=False)
    if name in ("prod", "complex"):
        return stft_variant(name)
    raise ValueError(f"unknown auxiliary term {name!r}")


class Objective(nn.Module):
    """``L1 + weight * aux``; ``last`` holds each term's value of the latest call, for logging."""

    def __init__(self, aux: str = "", weight: float = 0.0) -> None:
        super().__init__()
        self.aux_name, self.weight = aux, float(weight)
        self.aux = make_term(aux) if aux else None
        self.last: Dict[str, float] = {}

    def forward(self, o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        l1 = F.l1_loss(o, t)
        self.last = {"l1": float(l1.detach())}
        if self.aux is None:
            return l1
        a = self.aux(o, t)
        self.last["aux"] = float(a.detach())
        return l1 + self.weight * a


def calibrated_weight(aux: str, ratio: float, blurry: torch.Tensor, sharp: torch.Tensor) -> float:
    """``ratio * L1(blurry, sharp) / aux(blurry, sharp)``: the aux weight at which the weighted
    term is ``ratio`` times L1 for the untrained (identity) network, to two significant digits."""
    with torch.no_grad():
        l1 = F.l1_loss(blurry, sharp).item()
        a = make_term(aux)(blurry, sharp).item()
    return float(f"{ratio * l1 / a:.2g}")
