"""Short-time Fourier transforms of images.

:func:`stft2d` is the transform of section 3.1 of the paper: every ``window_size`` x
``window_size`` patch taken with step ``stride``, multiplied by a window and transformed with a
2-D real FFT. The internal :class:`StftPlan` also carries the analytic adjoint that the fused
losses in :mod:`stftblur.losses` use for their backward pass, and the row-wise 1-D transform that
the authors' released code computes (see ``docs/losses.md``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from stftblur._checks import check_image, check_positive_int

WindowSpec = Union[str, None, torch.Tensor]

_WINDOW_NAMES = ("hann", "sqrt-hann", "boxcar")


def _hann_1d(n: int, periodic: bool) -> torch.Tensor:
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    denom = n if periodic else n - 1
    k = torch.arange(n, dtype=torch.float64)
    return 0.5 - 0.5 * torch.cos(2.0 * torch.pi * k / denom)


@functools.lru_cache(maxsize=64)
def _named_window(name: Optional[str], size: Tuple[int, int]) -> torch.Tensor:
    if name is None or name == "boxcar":
        return torch.ones(size, dtype=torch.float64)
    if name == "hann":
        return torch.outer(_hann_1d(size[0], True), _hann_1d(size[1], True))
    if name == "sqrt-hann":
        return torch.outer(_hann_1d(size[0], False), _hann_1d(size[1], False)).sqrt()
    raise ValueError(f"window must be one of {_WINDOW_NAMES}, None or a tensor, got {name!r}")


def make_window(
    window: WindowSpec,
    window_size: Union[int, Tuple[int, int]],
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    r"""Build the 2-D analysis window used by :func:`stft2d`.

    Convention:
        ``"hann"`` is the *periodic* Hann window of the paper's formula,
        :math:`\frac14(1-\cos\frac{2\pi x}{L})(1-\cos\frac{2\pi y}{L})`, :math:`0 \le x, y < L`
        (``torch.hann_window(L, periodic=True)``, outer product). Periodic, not symmetric,
        because that is the formula the paper writes and because its shifted copies sum to a
        constant at stride L/4 (and L/2), so every pixel away from the border carries the same
        total weight in the loss. ``"sqrt-hann"`` is the disabled window of the authors' code:
        the square root of the outer product of numpy's *symmetric* ``np.hanning``. ``None`` or
        ``"boxcar"`` is all ones. A user tensor of shape (L,) is used as an outer product, a
        tensor of shape (L, L) as is.

    Args:
        window: a name, ``None`` or a tensor.
        window_size: L, or (height, width) of the window.
        dtype: dtype of the result.
        device: device of the result.

    Returns:
        The window, shape (height, width).

    Examples:
        >>> make_window("hann", 4)
        tensor([[0.0000, 0.0000, 0.0000, 0.0000],
                [0.0000, 0.2500, 0.5000, 0.2500],
                [0.0000, 0.5000, 1.0000, 0.5000],
                [0.0000, 0.2500, 0.5000, 0.2500]])
    """
    size = (window_size, window_size) if isinstance(window_size, int) else tuple(window_size)
    if isinstance(window, torch.Tensor):
        if window.is_complex() or not window.is_floating_point():
            raise TypeError(f"window must be a real floating-point tensor, got {window.dtype}")
        if window.dim() == 1 and size[0] == size[1] and window.shape[0] == size[0]:
            window = torch.outer(window, window)
        if tuple(window.shape) != size:
            raise ValueError(f"window tensor must have shape {size} or ({size[0]},), got {tuple(window.shape)}")
        return window.to(dtype=dtype, device=device)
    if window is not None and not isinstance(window, str):
        raise TypeError(f"window must be a string, None or a tensor, got {type(window).__name__}")
    return _named_window(window, size).to(dtype=dtype, device=device)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def num_windows(size: int, window_size: int, stride: int) -> int:
    """K = floor((size - window_size) / stride) + 1, the paper's count of window positions."""
    return (size - window_size) // stride + 1


@dataclass(frozen=True)
class StftPlan:
    """One transform: which patches, which window, which coefficients.

    ``kind="2d"`` is :func:`stft2d`. ``kind="rows"`` is what the authors' TensorFlow code
    computes: the un-windowed 1-D FFT along the width of the first ``window_size // 2`` rows of
    every patch, keeping the first ``window_size // 2`` frequencies.

    The plan knows its analytic adjoint (:meth:`adjoint`), with PyTorch's convention for
    gradients of real functions of complex tensors (``grad = dL/dRe + i dL/dIm``), so that
    ``adjoint(forward_grad)`` is the gradient with respect to the image.
    """

    window_size: Tuple[int, int]
    stride: int
    kind: str = "2d"
    normalized: bool = False

    def coefficient_shape(self) -> Tuple[int, int]:
        wh, ww = self.window_size
        if self.kind == "rows":
            return (wh // 2, ww // 2)
        return (wh, ww // 2 + 1)

    def grid(self, height: int, width: int) -> Tuple[int, int]:
        wh, ww = self.window_size
        return num_windows(height, wh, self.stride), num_windows(width, ww, self.stride)

    def _scale(self, window: Optional[torch.Tensor]) -> Optional[float]:
        if not self.normalized:
            return None
        s = float(window.sum()) if window is not None else float(self.window_size[0] * self.window_size[1])
        return 1.0 / s

    def forward(self, x: torch.Tensor, window: Optional[torch.Tensor]) -> torch.Tensor:
        """(B, C, H, W) real -> (B, C, K, L, P, Q) complex."""
        wh, ww = self.window_size
        s = self.stride
        patches = x.unfold(2, wh, s).unfold(3, ww, s)  # view (B, C, K, L, wh, ww)
        if self.kind == "rows":
            patches = patches[..., : wh // 2, :]
            coeffs = torch.fft.rfft(patches, dim=-1)[..., : ww // 2]
        else:
            if window is not None:
                patches = patches * window
            coeffs = torch.fft.rfft2(patches, dim=(-2, -1))
        scale = self._scale(window)
        return coeffs if scale is None else coeffs * scale

    def adjoint(self, grad: torch.Tensor, window: Optional[torch.Tensor], height: int, width: int) -> torch.Tensor:
        """Gradient of the image from the gradient of its coefficients (the adjoint transform)."""
        wh, ww = self.window_size
        s = self.stride
        b, c, k, l = grad.shape[:4]
        # rfft's adjoint: bins that stand for a conjugate pair (all but DC and, for even sizes,
        # Nyquist) count once in irfft's Hermitian extension but twice in the sum, so halve them.
        nq = ww // 2 + 1
        if self.kind == "rows":
            full = grad.new_zeros(grad.shape[:-1] + (nq,))
            full[..., : grad.shape[-1]] = grad
            grad = full
        half = grad.new_full((nq,), 0.5)
        half[0] = 1.0
        if ww % 2 == 0:
            half[-1] = 1.0
        grad = grad * half
        if self.kind == "rows":
            patch_grad = torch.fft.irfft(grad, n=ww, dim=-1) * ww
            patch_grad = F.pad(patch_grad, (0, 0, 0, wh - wh // 2))
        else:
            patch_grad = torch.fft.irfft2(grad, s=(wh, ww), dim=(-2, -1)) * (wh * ww)
            if window is not None:
                patch_grad = patch_grad * window
        scale = self._scale(window)
        if scale is not None:
            patch_grad = patch_grad * scale
        return _fold(patch_grad, height, width, s)


def _fold(patches: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """Sum (B, C, K, L, wh, ww) patches back into (B, C, height, width) images (unfold's adjoint)."""
    b, c, k, l, wh, ww = patches.shape
    cols = patches.permute(0, 1, 4, 5, 2, 3).reshape(b * c, wh * ww, k * l)
    out = F.fold(cols, (height, width), (wh, ww), stride=stride)
    return out.view(b, c, height, width)


def resolve_window_size(
    window_size: Optional[int], stride: Optional[int], height: int, width: int
) -> Tuple[Tuple[int, int], int]:
    """Validate (window_size, stride); ``window_size=None`` means one window over the whole image."""
    if window_size is None:
        return (height, width), 1
    check_positive_int(window_size, "window_size")
    check_positive_int(stride, "stride")
    return (window_size, window_size), int(stride)  # type: ignore[arg-type]


def stft2d(
    x: torch.Tensor,
    window_size: Optional[int] = 16,
    stride: int = 4,
    window: WindowSpec = "hann",
    normalized: bool = False,
) -> torch.Tensor:
    r"""Short-time 2-D Fourier transform of a batch of images.

    Every ``window_size`` x ``window_size`` patch whose top-left corner is at
    ``(k * stride, l * stride)`` is multiplied by the window and transformed with
    ``torch.fft.rfft2``:

    .. math:: F(k, l, u, v) = \sum_{m,n} x(ks + m, ls + n)\, \mathcal W(m, n)\,
              e^{-2\pi i (um/L + vn/L)}

    Convention:
        K = floor((H - window_size) / stride) + 1 and L likewise (the paper's count); pixels
        past the last full window are not used. Frequencies follow ``torch.fft.rfft2``: the
        second-to-last axis holds u in ``torch.fft.fftfreq(window_size)`` order, the last axis
        the non-negative v. Unnormalised like the paper's formula (and ``torch.fft``);
        ``normalized=True`` divides by the window's sum, so that the DC coefficient is the
        window-weighted local mean. ``window_size=None`` uses one window covering the whole
        image (a global DFT, K = L = 1). See :func:`make_window` for the windows. float64 is
        kept; float16 and bfloat16 are computed in float32. Differentiable; CPU and CUDA.

    Args:
        x: real images of shape (B, C, H, W).
        window_size: side of the square window, or None for the whole image.
        stride: step between windows, in pixels.
        window: ``"hann"`` (periodic), ``"sqrt-hann"`` (the authors' code), ``None``/``"boxcar"``,
            or a tensor.
        normalized: divide by the window's sum.

    Returns:
        Complex tensor of shape (B, C, K, L, window_size, window_size // 2 + 1).

    Examples:
        >>> import torch
        >>> x = torch.rand(2, 3, 28, 28)
        >>> stft2d(x, window_size=16, stride=4).shape
        torch.Size([2, 3, 4, 4, 16, 9])
        >>> stft2d(torch.ones(1, 1, 8, 8), window_size=8, window=None)[0, 0, 0, 0, 0, 0]
        tensor(64.+0.j)
    """
    check_image(x, "x")
    (wh, ww), s = resolve_window_size(window_size, stride, x.shape[-2], x.shape[-1])
    if x.shape[-2] < wh or x.shape[-1] < ww:
        raise ValueError(f"x of spatial size {tuple(x.shape[-2:])} is smaller than window_size={window_size}")
    dtype = _compute_dtype(x)
    x = x.to(dtype)
    win = None if window is None else make_window(window, (wh, ww), dtype, x.device)
    plan = StftPlan((wh, ww), s, "2d", normalized)
    return plan.forward(x, win)
