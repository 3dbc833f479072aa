"""Differentiable losses (functional form and nn.Module for each)."""

from stftblur.losses.local_phase import (
    PRESETS,
    FourierLoss,
    LocalPhaseLoss,
    fourier_loss,
    frequency_weights,
    local_phase_loss,
)
from stftblur.losses.ssim import SSIMLoss, ssim_loss

__all__ = [
    "PRESETS",
    "LocalPhaseLoss",
    "local_phase_loss",
    "FourierLoss",
    "fourier_loss",
    "frequency_weights",
    "SSIMLoss",
    "ssim_loss",
]
