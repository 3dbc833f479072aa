"""The beta-VAE training objective with every reconstruction loss of the paper's Table 1.

``loss = beta * KL + reconstruction``, where the reconstruction term compares the RAW decoder
output with the binarized input (author-code-notes.md):

============  =====================================================================
``l2``        ``pixel_weight`` * per-image mean squared error
``l1``        ``pixel_weight`` * per-image mean absolute error
``ssim``      ``-ssim_weight`` * SSIM (stftblur.metrics.ssim, 'valid', = tf.image.ssim)
``dft+ssim``  the ssim term + ``freq_weight`` * frequency term, ONE window over the image
``ours``      the ssim term + ``freq_weight`` * frequency term (window 16, stride 4)
``ffl``       ``pixel_weight`` * l2 + ``ffl_weight`` * focal frequency loss (Jiang et al. 2021)
============  =====================================================================

The frequency term is :class:`stftblur.losses.LocalPhaseLoss` configured by ``preset``
(``"paper-code"``: what the released code computes; ``"paper-text"``: section 3.1 read
literally; ``"default"``: this project's defaults) with any single option overridden. Every
term is averaged over the batch; KL is summed over latent dimensions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from stftblur._checks import check_choice, check_positive_float
from stftblur.losses import PRESETS, LocalPhaseConfig, LocalPhaseLoss
from stftblur.metrics import ssim

__all__ = ["DEFAULT_FREQ_WEIGHTS", "FREQ_PRESETS", "LOSSES", "ObjectiveConfig", "VAEObjective", "kl_divergence"]

LOSSES = ("l2", "l1", "ssim", "dft+ssim", "ours", "ffl")
#: The presets of the frequency term, the objective's default (the authors' code) first.
FREQ_PRESETS = ("paper-code",) + tuple(p for p in PRESETS if p != "paper-code")

# Weight of the frequency term when --freq-weight is not given. 0.0015 is the authors'
# coefficient (checkpoint name "0.1_0.9_0.0015_16_4"), used for both paper presets. The project's
# "default" loss averages over coefficients and normalises amplitudes (about 2.4 per image on the
# authors' checkpoints, against about 400 for the summed paper-code term); 5.0 gives its gradient
# a share of the SSIM term's gradient (0.27-0.46 on the authors' checkpoints) in the range of the
# paper-code term's (0.24-0.44): evals/freq_weight_scale.py, docs/vae.md.
DEFAULT_FREQ_WEIGHTS = {"paper-code": 0.0015, "paper-text": 0.0015, "default": 5.0}

# The options of the frequency term that a run may override: every LocalPhaseConfig option but
# eps (fixed at its default, and not part of config.json).
_FREQ_OPTIONS = tuple(name for name in LocalPhaseConfig.field_names() if name != "eps")
_USED_BY = {
    "pixel_weight": ("l2", "l1", "ffl"),
    "ssim_weight": ("ssim", "dft+ssim", "ours"),
    "freq_weight": ("dft+ssim", "ours"),
    "preset": ("dft+ssim", "ours"),
    "ffl_weight": ("ffl",),
    "ffl_alpha": ("ffl",),
    **{name: ("dft+ssim", "ours") for name in _FREQ_OPTIONS},
}
_DEFAULTS = {"pixel_weight": 1.0, "ssim_weight": 500.0, "ffl_weight": 1.0, "ffl_alpha": 1.0}


@dataclass(frozen=True)
class ObjectiveConfig:
    """What the VAE is trained to minimise. ``None`` means "the loss's or preset's default".

    Args:
        loss: one of ``l2``, ``l1``, ``ssim``, ``dft+ssim``, ``ours``, ``ffl``.
        beta: weight of the KL term (0.005 in the authors' code).
        pixel_weight: weight of the l2/l1 term (1).
        ssim_weight: the SSIM term is ``-ssim_weight * SSIM`` (500).
        freq_weight: weight of the frequency term (0.0015 for the paper presets).
        preset: ``paper-code`` (default), ``paper-text`` or ``default``: the frequency term's
            configuration, see :data:`stftblur.losses.PRESETS`.
        phase_weight, amplitude_weight, window_size, stride, window, phase_distance,
            frequency_weighting, aggregate, normalized, transform, phase_offset: override one
            option of the preset (see :class:`~stftblur.losses.LocalPhaseConfig`; ``None``
            here means "the preset's value", so no window is ``window="none"``).
        ffl_weight: weight of the focal frequency loss (1).
        ffl_alpha: its spectrum-weight exponent alpha (1).

    Examples:
        >>> ObjectiveConfig("ours").resolved()["frequency"]["window_size"]
        16
        >>> ObjectiveConfig("dft+ssim").resolved()["frequency"]["window_size"]
        28
    """

    loss: str = "ours"
    beta: float = 0.005
    pixel_weight: Optional[float] = None
    ssim_weight: Optional[float] = None
    freq_weight: Optional[float] = None
    preset: Optional[str] = None
    phase_weight: Optional[float] = None
    amplitude_weight: Optional[float] = None
    window_size: Optional[int] = None
    stride: Optional[int] = None
    window: Optional[str] = None
    phase_distance: Optional[str] = None
    frequency_weighting: Optional[str] = None
    aggregate: Optional[str] = None
    normalized: Optional[bool] = None
    transform: Optional[str] = None
    phase_offset: Optional[float] = None
    ffl_weight: Optional[float] = None
    ffl_alpha: Optional[float] = None

    def __post_init__(self) -> None:
        check_choice(self.loss, "loss", LOSSES)
        check_positive_float(self.beta, "beta", allow_zero=True)
        for name, losses in _USED_BY.items():
            if getattr(self, name) is not None and self.loss not in losses:
                raise ValueError(
                    f"{name} does not apply to loss {self.loss!r}; it is used by {', '.join(losses)}"
                )
        for name in ("pixel_weight", "ssim_weight", "freq_weight", "ffl_weight", "ffl_alpha"):
            if getattr(self, name) is not None:
                check_positive_float(getattr(self, name), name, allow_zero=True)
        if self.preset is not None:
            check_choice(self.preset, "preset", FREQ_PRESETS)
        if self.loss in ("dft+ssim", "ours"):
            freq = self.frequency_config()  # validates every override (LocalPhaseConfig)
            if freq.transform == "rows" and freq.window is not None:
                raise ValueError(
                    f"window={freq.window!r} has no effect with transform='rows' (the authors' "
                    f"un-windowed row FFT); use window='none', or transform='2d' for a windowed STFT"
                )

    def frequency_config(self, image_size: int = 28) -> LocalPhaseConfig:
        """The :class:`~stftblur.losses.LocalPhaseConfig` of the frequency term.

        ``dft+ssim`` defaults to one window covering the whole ``image_size`` image, stride 1, no
        analysis window (a global DFT). With the paper-code preset this is the authors' row
        transform at window 28: a 1-D FFT along the width of the image's first 14 rows, first
        14 width-frequencies (the lower half of the image is never compared).

        Examples:
            >>> ObjectiveConfig("ours", preset="default", window="none").frequency_config().window is None
            True
        """
        config = LocalPhaseConfig.from_preset(self.preset or "paper-code")
        if self.loss == "dft+ssim":
            config = config.replace(window_size=image_size, stride=1, window=None)
        return config.replace(**{name: getattr(self, name) for name in _FREQ_OPTIONS if getattr(self, name) is not None})

    def frequency_options(self, image_size: int = 28) -> Dict[str, Any]:
        """:meth:`frequency_config` as a dict without ``eps`` (what config.json records).

        Examples:
            >>> ObjectiveConfig("ours", preset="default", window="none").frequency_options()["window"] is None
            True
        """
        opts = self.frequency_config(image_size).to_dict()
        opts.pop("eps")
        return opts

    def resolved(self, image_size: int = 28) -> Dict[str, Any]:
        """Every coefficient actually used, for config.json (``None`` replaced by defaults).

        Examples:
            >>> r = ObjectiveConfig("ssim").resolved()
            >>> r["ssim_weight"], r["frequency"]
            (500.0, None)
        """
        out: Dict[str, Any] = {"loss": self.loss, "beta": float(self.beta)}
        for name in ("pixel_weight", "ssim_weight", "ffl_weight", "ffl_alpha"):
            if self.loss in _USED_BY[name]:
                value = getattr(self, name)
                out[name] = float(_DEFAULTS[name] if value is None else value)
        if self.loss in ("dft+ssim", "ours"):
            preset = self.preset or "paper-code"
            out["preset"] = preset
            out["freq_weight"] = float(DEFAULT_FREQ_WEIGHTS[preset] if self.freq_weight is None else self.freq_weight)
            out["frequency"] = self.frequency_options(image_size)
        else:
            out["frequency"] = None
        return out

    def to_dict(self) -> Dict[str, Any]:
        """The fields as given (``None`` for defaults), JSON-serialisable."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ObjectiveConfig":
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ObjectiveConfig keys {unknown}")
        return cls(**d)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per sample, summed over latent dimensions, shape (B,).

    Examples:
        >>> import torch
        >>> kl_divergence(torch.zeros(2, 2), torch.zeros(2, 2)).abs()
        tensor([0., 0.])
        >>> kl_divergence(torch.ones(1, 2), torch.zeros(1, 2))
        tensor([1.])
    """
    return -0.5 * (1.0 + logvar - mean.square() - logvar.exp()).sum(1)


class VAEObjective(nn.Module):
    """``beta * KL + reconstruction`` for one :class:`ObjectiveConfig`.

    ``forward(recon, target, mean, logvar)`` returns ``(loss, terms)``: the scalar to minimise
    and a dict of detached scalars: ``loss``, ``kl`` (unweighted, batch mean) and the raw value of
    each reconstruction component (``l2``, ``l1``, ``ssim`` = mean SSIM, ``freq``, ``ffl``).

    ``kernels`` is the frequency term's implementation (``"auto"`` or ``"reference"``, see
    :func:`stftblur.losses.local_phase_loss`): a setting of this objective, so that a resumed
    run keeps the float rounding it started with (:func:`stftblur.training.run_dir.run_kernels`)
    without changing anything for the rest of the process.

    Examples:
        >>> import torch
        >>> objective = VAEObjective(ObjectiveConfig("ours"))
        >>> x = (torch.rand(4, 1, 28, 28) > 0.5).float()
        >>> loss, terms = objective(x.clone().requires_grad_(), x, torch.zeros(4, 2), torch.zeros(4, 2))
        >>> round(loss.item(), 3), sorted(terms)
        (-500.0, ['freq', 'kl', 'loss', 'ssim'])
    """

    def __init__(self, config: ObjectiveConfig, image_size: int = 28, kernels: str = "auto") -> None:
        super().__init__()
        self.config = config
        self.settings = config.resolved(image_size)
        s = self.settings
        self.frequency: Optional[LocalPhaseLoss] = None
        if s["frequency"] is not None:
            self.frequency = LocalPhaseLoss(config=config.frequency_config(image_size), reduction="mean",
                                            kernels=kernels)
        self.ffl: Optional[nn.Module] = None
        if config.loss == "ffl":
            from focal_frequency_loss import FocalFrequencyLoss

            self.ffl = FocalFrequencyLoss(loss_weight=1.0, alpha=s["ffl_alpha"])

    def forward(
        self, recon: torch.Tensor, target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        s = self.settings
        loss_name = s["loss"]
        kl = kl_divergence(mean, logvar).mean()
        total = s["beta"] * kl
        terms: Dict[str, torch.Tensor] = {"kl": kl}
        if loss_name in ("l2", "ffl"):
            l2 = (recon - target).square().flatten(1).mean(1).mean()
            total = total + s["pixel_weight"] * l2
            terms["l2"] = l2
        elif loss_name == "l1":
            l1 = (recon - target).abs().flatten(1).mean(1).mean()
            total = total + s["pixel_weight"] * l1
            terms["l1"] = l1
        else:
            sim = ssim(recon, target).mean()
            total = total - s["ssim_weight"] * sim
            terms["ssim"] = sim
        if self.frequency is not None:
            freq = self.frequency(recon, target)
            total = total + s["freq_weight"] * freq
            terms["freq"] = freq
        if self.ffl is not None:
            ffl = self.ffl(recon, target)
            total = total + s["ffl_weight"] * ffl
            terms["ffl"] = ffl
        terms = {k: v.detach() for k, v in terms.items()}
        terms["loss"] = total.detach()
        return total, terms
