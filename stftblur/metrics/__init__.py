"""Blur and fidelity metrics."""

from stftblur.metrics.fidelity import psnr, ssim, ssim_map

__all__ = ["psnr", "ssim", "ssim_map"]
