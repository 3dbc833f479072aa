"""Blur and fidelity metrics, and the registry that names them for evaluation."""

from stftblur.metrics._registry import METRICS, Metric, get_metric, register_metric
from stftblur.metrics.fidelity import psnr, ssim, ssim_map
from stftblur.metrics.lpc_si import LPCSI, blur_effect, lpc_si
from stftblur.metrics.spectral import (
    RadialPowerSpectrum,
    RadialSpectrum,
    SpectralDeficit,
    plot_spectra,
    radial_power_spectrum,
    spectral_deficit,
)

__all__ = [
    "psnr",
    "ssim",
    "ssim_map",
    "lpc_si",
    "LPCSI",
    "blur_effect",
    "radial_power_spectrum",
    "RadialSpectrum",
    "RadialPowerSpectrum",
    "spectral_deficit",
    "SpectralDeficit",
    "plot_spectra",
    "METRICS",
    "Metric",
    "get_metric",
    "register_metric",
]
