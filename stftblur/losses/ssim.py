"""SSIM as a loss."""

from __future__ import annotations

import torch
from torch import nn

from stftblur._checks import check_reduction, reduce
from stftblur.metrics.fidelity import ssim

__all__ = ["SSIMLoss", "ssim_loss"]


def ssim_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    padding: str = "valid",
    reduction: str = "mean",
) -> torch.Tensor:
    r"""1 - SSIM, per image then reduced over the batch.

    Convention:
        SSIM exactly as :func:`stftblur.metrics.ssim` (TensorFlow's ``tf.image.ssim`` and
        scikit-image's Gaussian SSIM). Note that kornia's ``SSIMLoss`` returns
        (1 - SSIM) / 2 and uses 'same' reflect padding; this loss is 1 - SSIM with 'valid'
        padding by default, the quantity the paper trains (up to the factor 500 of its code).

    Examples:
        >>> import torch
        >>> x = torch.rand(2, 1, 28, 28)
        >>> ssim_loss(x, x)
        tensor(0.)
    """
    check_reduction(reduction)
    return reduce(1.0 - ssim(input, target, data_range, window_size, sigma, padding), reduction)


class SSIMLoss(nn.Module):
    """Module form of :func:`ssim_loss`.

    Examples:
        >>> import torch
        >>> SSIMLoss(reduction="none")(torch.ones(3, 1, 16, 16), torch.ones(3, 1, 16, 16))
        tensor([0., 0., 0.])
    """

    def __init__(
        self,
        data_range: float = 1.0,
        window_size: int = 11,
        sigma: float = 1.5,
        padding: str = "valid",
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.data_range = data_range
        self.window_size = window_size
        self.sigma = sigma
        self.padding = padding
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ssim_loss(input, target, self.data_range, self.window_size, self.sigma, self.padding, self.reduction)
