"""stftblur: differentiable local-phase (STFT) losses and blur metrics.

The public API is re-exported here::

    >>> import torch, stftblur
    >>> x = torch.rand(2, 1, 32, 32)
    >>> stftblur.local_phase_loss(x, x).item()
    0.0
"""

__version__ = "0.1.0"

from stftblur.transforms import stft2d, make_window  # noqa: E402
from stftblur.losses import (  # noqa: E402
    FourierLoss,
    LocalPhaseConfig,
    LocalPhaseLoss,
    SSIMLoss,
    fourier_loss,
    local_phase_loss,
    ssim_loss,
)
from stftblur.metrics import psnr, ssim  # noqa: E402
from stftblur.metrics import LPCSI, lpc_si  # noqa: E402

__all__ = [
    "__version__",
    "stft2d",
    "make_window",
    "local_phase_loss",
    "LocalPhaseLoss",
    "LocalPhaseConfig",
    "fourier_loss",
    "FourierLoss",
    "ssim_loss",
    "SSIMLoss",
    "psnr",
    "ssim",
    "lpc_si",
    "LPCSI",
]
