"""Blur and fidelity metrics."""

from stftblur.metrics.fidelity import psnr, ssim, ssim_map
from stftblur.metrics.lpc_si import LPCSI, blur_effect, lpc_si

__all__ = ["psnr", "ssim", "ssim_map", "lpc_si", "LPCSI", "blur_effect"]
