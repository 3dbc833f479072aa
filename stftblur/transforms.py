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

__all__ = ["WINDOWS", "make_window", "normalize_window", "stft2d"]

WindowSpec = Union[str, None, torch.Tensor]

#: Window names. ``None`` is "no window" (all ones); ``"none"`` is its spelling where text is needed.
WINDOWS = ("hann", "sqrt-hann", "none")


def _hann_1d(n: int, periodic: bool) -> torch.Tensor:
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    denom = n if periodic else n - 1
    k = torch.arange(n, dtype=torch.float64)
    return 0.5 - 0.5 * torch.cos(2.0 * torch.pi * k / denom)


def normalize_window(window: object) -> WindowSpec:
    """The one spelling of a window option: ``None`` for no window, else a name or a tensor.

    Convention:
        ``"none"`` (the text spelling, for command lines and JSON) becomes ``None``. Other names
        must be in :data:`WINDOWS`; tensors are returned as they are (checked by
        :func:`make_window`).

    Examples:
        >>> normalize_window("none") is None, normalize_window("hann")
        (True, 'hann')
    """
    if window is None or isinstance(window, torch.Tensor):
        return window
    if not isinstance(window, str):
        raise TypeError(f"window must be a string, None or a tensor, got {type(window).__name__}")
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, None or a tensor, got {window!r}")
    return None if window == "none" else window


@functools.lru_cache(maxsize=64)
def _named_window(name: Optional[str], size: Tuple[int, int]) -> torch.Tensor:
    if name is None:
        return torch.ones(size, dtype=torch.float64)
    if name == "hann":
        return torch.outer(_hann_1d(size[0], True), _hann_1d(size[1], True))
    assert name == "sqrt-hann", name
    return torch.outer(_hann_1d(size[0], False), _hann_1d(size[1], False)).sqrt()


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
        the square root of the outer product of numpy's *symmetric* ``np.hanning``. ``None`` (or
        ``"none"``) is all ones. A user tensor of shape (L,) is used as an outer product, a
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
    return _named_window(normalize_window(window), size).to(dtype=dtype, device=device)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def num_windows(size: int, window_size: int, stride: int) -> int:
    """K = floor((size - window_size) / stride) + 1, the paper's count of window positions."""
    return (size - window_size) // stride + 1


@dataclass(frozen=True)
class StftPlan:
    """One transform: which patches, which window, which coefficients, and its adjoint.

    ``kind="2d"`` is :func:`stft2d`. ``kind="rows"`` is what the authors' TensorFlow code
    computes: the un-windowed 1-D FFT along the width of the first ``window_size // 2`` rows of
    every patch, keeping the first ``window_size // 2`` frequencies.

    Internally the 2-D coefficients are stored transposed, (..., ww // 2 + 1, wh) (the real
    transform along the patch rows' axis first), because PyTorch's pocketfft computes the
    inverse of that layout several times faster than the inverse of rfft2's layout;
    :meth:`to_standard` gives the public layout as a view.

    :meth:`adjoint` uses PyTorch's convention for gradients of real functions of complex
    tensors (``grad = dL/dRe + i dL/dIm``): ``adjoint(g * adjoint_scale())`` is the gradient
    with respect to the image. The factor is kept apart so that callers can fold it into their
    own per-coefficient weights instead of spending a pass over the coefficients on it.
    """

    window_size: Tuple[int, int]
    stride: int
    kind: str = "2d"
    normalized: bool = False

    def coefficient_shape(self) -> Tuple[int, int]:
        """(P, Q) of the public layout."""
        wh, ww = self.window_size
        if self.kind == "rows":
            return (wh // 2, ww // 2)
        return (wh, ww // 2 + 1)

    def grid(self, height: int, width: int) -> Tuple[int, int]:
        wh, ww = self.window_size
        return num_windows(height, wh, self.stride), num_windows(width, ww, self.stride)

    def effective_window(
        self, window: Optional[torch.Tensor], dtype: torch.dtype, device: torch.device
    ) -> Optional[torch.Tensor]:
        """The window with the normalisation folded in (the transform is linear in it)."""
        if not self.normalized:
            return window
        if window is None:
            window = torch.ones(self.window_size, dtype=dtype, device=device)
        return window / window.sum()

    def to_standard(self, coeffs: torch.Tensor) -> torch.Tensor:
        return coeffs.transpose(-1, -2) if self.kind == "2d" else coeffs

    def to_internal(self, weight: torch.Tensor) -> torch.Tensor:
        """A weight broadcastable to the public (P, Q) grid, in the internal layout."""
        weight = weight.expand(self.coefficient_shape())
        return weight.transpose(-1, -2) if self.kind == "2d" else weight

    def adjoint_scale(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Per-coefficient factor of the adjoint (internal layout).

        The inverse real FFT counts every bin that stands for a conjugate pair (all but DC and,
        for even sizes, Nyquist) twice, where the adjoint of the forward real FFT counts it once:
        those bins are halved. The inverse FFT's 1/N is undone.
        """
        wh, ww = self.window_size
        if self.kind == "rows":
            half = torch.full((ww // 2,), 0.5, dtype=dtype, device=device)
            half[0] = 1.0
            return (half * ww).expand(wh // 2, ww // 2)
        n = ww // 2 + 1
        half = torch.full((n,), 0.5, dtype=dtype, device=device)
        half[0] = 1.0
        if ww % 2 == 0:
            half[-1] = 1.0
        return (half * (wh * ww))[:, None].expand(n, wh)

    def forward(self, x: torch.Tensor, window: Optional[torch.Tensor]) -> torch.Tensor:
        """(N, C, H, W) real -> (N, C, K, L, ...) complex, internal layout; window: effective."""
        wh, ww = self.window_size
        s = self.stride
        patches = x.unfold(-2, wh, s).unfold(-2, ww, s)  # view (..., K, L, wh, ww)
        if self.kind == "rows":
            patches = patches[..., : wh // 2, :]
            if window is not None:
                patches = patches * window[: wh // 2]
            return torch.fft.rfft(patches, dim=-1)[..., : ww // 2]
        if window is not None:
            patches = patches * window
        # Real transform along the patch columns (v, halved), full along the rows (u); stored
        # (..., v, u).
        return torch.fft.rfft2(patches.transpose(-1, -2), dim=(-1, -2))

    def adjoint_patches(self, grad: torch.Tensor) -> torch.Tensor:
        """The inverse transform of coefficient gradients (internal layout, already scaled):
        (..., K, L, R, ww) patch gradients before the window, R = wh (``"2d"``) or wh // 2
        (``"rows"``, whose other rows get no gradient); a transposed view for ``"2d"``."""
        wh, ww = self.window_size
        if self.kind == "rows":
            grad = F.pad(torch.view_as_real(grad), (0, 0, 0, ww // 2 + 1 - grad.shape[-1]))
            return torch.fft.irfft(torch.view_as_complex(grad), n=ww, dim=-1)
        return torch.fft.irfft2(grad, s=(wh, ww), dim=(-1, -2)).transpose(-1, -2)

    def adjoint(self, grad: torch.Tensor, window: Optional[torch.Tensor], height: int, width: int) -> torch.Tensor:
        """Image-domain image of coefficient gradients (internal layout, already scaled)."""
        wh, ww = self.window_size
        patch_grad = self.adjoint_patches(grad)
        if self.kind == "rows":
            if window is not None:
                patch_grad = patch_grad * window[: wh // 2]
            patch_grad = F.pad(patch_grad, (0, 0, 0, wh - wh // 2))
        elif window is not None:
            patch_grad = patch_grad * window
        return overlap_add(patch_grad, height, width, self.stride)


def overlap_add(patches: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """Sum (..., K, L, wh, ww) patches back into (..., height, width) images (unfold's adjoint).

    Where the stride divides the window, the patches are added as (wh/stride) x (ww/stride)
    shifted block grids, which is several times faster than ``torch.nn.functional.fold``.
    """
    *lead, k, l, wh, ww = patches.shape
    n = 1
    for d in lead:
        n *= d
    patches = patches.reshape(n, k, l, wh, ww)
    s = stride
    if wh % s or ww % s:
        cols = patches.permute(0, 3, 4, 1, 2).reshape(n, wh * ww, k * l)
        return F.fold(cols, (height, width), (wh, ww), stride=s).view(*lead, height, width)
    ah, aw = wh // s, ww // s
    blocks = patches.view(n, k, l, ah, s, aw, s).permute(0, 3, 5, 1, 4, 2, 6)  # (n, ah, aw, k, s, l, s)
    out = patches.new_zeros(n, k + ah - 1, s, l + aw - 1, s)
    for a in range(ah):
        for b in range(aw):
            out[:, a : a + k, :, b : b + l, :] += blocks[:, a, b]
    hh, ww_used = (k + ah - 1) * s, (l + aw - 1) * s
    out = out.view(n, hh, ww_used)
    if (hh, ww_used) != (height, width):
        out = F.pad(out, (0, width - ww_used, 0, height - hh))
    return out.view(*lead, height, width)


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
        window: ``"hann"`` (periodic), ``"sqrt-hann"`` (the authors' code), ``None`` (no
            window; ``"none"`` as text), or a tensor.
        normalized: divide by the window's sum. False by default, like the paper's formula
            and ``torch.fft``; the losses normalise by default (see
            :class:`~stftblur.losses.LocalPhaseConfig`).

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
    window = normalize_window(window)
    win = None if window is None else make_window(window, (wh, ww), dtype, x.device)
    plan = StftPlan((wh, ww), s, "2d", normalized)
    return plan.to_standard(plan.forward(x, plan.effective_window(win, dtype, x.device)))
