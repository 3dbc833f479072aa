"""Differentiable losses (functional form and nn.Module for each) and the local-phase options."""

from stftblur.losses.config import (
    AGGREGATES,
    FREQUENCY_WEIGHTINGS,
    PHASE_DISTANCES,
    PRESETS,
    TRANSFORMS,
    WINDOWS,
    LocalPhaseConfig,
)
from stftblur.losses.local_phase import (
    FourierLoss,
    LocalPhaseLoss,
    fourier_loss,
    frequency_weights,
    local_phase_loss,
)
from stftblur.losses.ssim import SSIMLoss, ssim_loss

__all__ = [
    "AGGREGATES",
    "FREQUENCY_WEIGHTINGS",
    "PHASE_DISTANCES",
    "PRESETS",
    "TRANSFORMS",
    "WINDOWS",
    "LocalPhaseConfig",
    "LocalPhaseLoss",
    "local_phase_loss",
    "FourierLoss",
    "fourier_loss",
    "frequency_weights",
    "SSIMLoss",
    "ssim_loss",
]
