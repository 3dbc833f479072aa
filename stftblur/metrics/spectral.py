"""Set-level, unpaired blur: the radially averaged power spectrum of a set of images.

A blurred image has less power at high spatial frequencies than a sharp one. Generated samples
have no paired reference, but a *set* of them can be compared with a set of real images of the
same size: :func:`radial_power_spectrum` (or the :class:`RadialSpectrum` accumulator, for sets
that do not fit in memory) gives the mean power per radial frequency band, and
:func:`spectral_deficit` the ratio of two sets' spectra per band and one number, the
high-frequency power deficit in dB. :func:`plot_spectra` draws the spectra and their ratio.
See ``docs/metrics.md`` for the conventions in one place.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Optional, Tuple, Union

import torch

from stftblur._checks import check_image, check_positive_int
from stftblur.errors import require_extra
from stftblur.metrics._spectral_ops import power_sum_op, radial_power_op
from stftblur.metrics.fidelity import _compute_dtype

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "radial_power_spectrum",
    "RadialSpectrum",
    "RadialPowerSpectrum",
    "spectral_deficit",
    "SpectralDeficit",
    "plot_spectra",
]

_WINDOWS = ("hann", "none")
#: Default band of :func:`spectral_deficit`: the upper half of the frequencies up to Nyquist.
DEFAULT_BAND = (0.25, 0.5)


def _check_window(window: Optional[str]) -> str:
    if window is None:
        return "none"
    if window not in _WINDOWS:
        raise ValueError(f"window must be one of {_WINDOWS} (or None, the same as 'none'), got {window!r}")
    return window


def _check_n_bins(n_bins: Optional[int]) -> Optional[int]:
    return None if n_bins is None else check_positive_int(n_bins, "n_bins")


def _check_band(band: object) -> Tuple[float, float]:
    try:
        lo, hi = band  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"band must be a pair (low, high) of frequencies in cycles per pixel, got {band!r}") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"band must hold two finite numbers, got {band!r}")
    if not 0.0 <= lo < hi <= 0.5:
        raise ValueError(f"band must satisfy 0 <= low < high <= 0.5 (cycles per pixel), got {band!r}")
    return float(lo), float(hi)


def _default_n_bins(height: int, width: int) -> int:
    return min(height, width) // 2


@dataclasses.dataclass(frozen=True)
class RadialPowerSpectrum:
    """The mean radially averaged power spectrum of a set of images (see :func:`radial_power_spectrum`).

    Convention:
        ``freqs[j] = (j + 1) * 0.5 / n_bins`` is the centre of bin j in cycles per pixel (the
        last is 0.5, Nyquist); ``edges`` (n_bins + 1 values) are its limits
        ``0, 1.5 delta, 2.5 delta, ..., (n_bins + 0.5) delta`` with ``delta = 0.5 / n_bins``;
        ``power[j]`` is the mean, over the set and over the ``counts[j]`` DFT frequencies of the
        bin, of the power spectral density (NaN for an empty bin). ``size`` is the images'
        (H, W), ``n_images`` how many were averaged, ``window`` the window used.

    Examples:
        >>> import torch
        >>> s = radial_power_spectrum(torch.rand(4, 1, 16, 16))
        >>> s.freqs.shape, s.power.shape, s.edges.shape, s.n_images, s.size
        (torch.Size([8]), torch.Size([8]), torch.Size([9]), 4, (16, 16))
    """

    freqs: torch.Tensor
    power: torch.Tensor
    edges: torch.Tensor
    counts: torch.Tensor
    n_images: int
    size: Tuple[int, int]
    window: str

    @property
    def n_bins(self) -> int:
        """Number of frequency bins."""
        return int(self.freqs.numel())

    def band_power(self, band: Tuple[float, float] = DEFAULT_BAND) -> float:
        """Mean power over the DFT frequencies of the bins whose centre lies in ``band``.

        Convention:
            ``band = (low, high)`` in cycles per pixel, both ends included; the bins' powers
            are weighted by their number of DFT frequencies, so the result is the mean power
            spectral density over those frequencies. An error if no bin centre lies in the band.

        Examples:
            >>> import torch
            >>> s = radial_power_spectrum(torch.rand(2, 1, 32, 32), window=None)
            >>> 0.5 < s.band_power((0.25, 0.5)) / (1 / 12) < 1.5   # white noise: flat at the variance
            True
        """
        lo, hi = _check_band(band)
        inside = (self.freqs >= lo - 1e-12) & (self.freqs <= hi + 1e-12) & (self.counts > 0)
        if not bool(inside.any()):
            raise ValueError(
                f"band {band!r} contains no frequency bin centre (bins are {self.n_bins} of width "
                f"{0.5 / self.n_bins:g} cycles per pixel); widen the band or use more bins"
            )
        counts = self.counts[inside].to(torch.float64)
        return float((self.power[inside].to(torch.float64) * counts).sum() / counts.sum())


class RadialSpectrum:
    """Accumulate the radially averaged power spectrum of a set of images, one batch at a time.

    Convention:
        That of :func:`radial_power_spectrum`, whose result :meth:`compute` returns for every
        image seen since the last :meth:`reset`, whatever the batch sizes. Every image must have
        the (H, W) of the first batch; channel counts, dtypes and batch sizes may vary. The sum
        of the power spectra is kept in float64 on the device of the first batch (one
        (H, W // 2 + 1) plane; the images themselves are not kept); the result has the widest
        computation dtype seen (float64 if any batch was float64, else float32). No gradient.

    Args:
        window: ``"hann"`` (default) or ``"none"``/``None``.
        n_bins: number of frequency bins; ``None`` means ``min(H, W) // 2``.

    Examples:
        >>> import torch
        >>> acc = RadialSpectrum()
        >>> for _ in range(3):
        ...     acc.update(torch.rand(5, 3, 32, 32))
        >>> acc.count, acc.compute().power.shape
        (15, torch.Size([16]))
    """

    def __init__(self, window: Optional[str] = "hann", n_bins: Optional[int] = None) -> None:
        self.window = _check_window(window)
        self.n_bins = _check_n_bins(n_bins)
        self.reset()

    def reset(self) -> None:
        """Forget every image seen."""
        self._sum: Optional[torch.Tensor] = None
        self._size: Optional[Tuple[int, int]] = None
        self._count = 0
        self._dtype = torch.float32
        self._batches = 0

    @property
    def count(self) -> int:
        """Number of images seen so far."""
        return self._count

    @property
    def size(self) -> Optional[Tuple[int, int]]:
        """The (H, W) of the images, fixed by the first batch (None before it)."""
        return self._size

    def update(self, images: torch.Tensor, name: str = "images") -> None:
        """Add a batch (B, C, H, W); ``name`` is used in error messages.

        Convention:
            See :class:`RadialSpectrum`; the batch's (H, W) must be that of the first batch.

        Examples:
            >>> import torch
            >>> acc = RadialSpectrum()
            >>> acc.update(torch.rand(2, 1, 8, 8)); acc.count
            2
        """
        label = name if self._batches == 0 else f"{name} (batch {self._batches + 1})"
        x = check_image(images, label)
        height, width = x.shape[-2:]
        if height < 2 or width < 2:
            raise ValueError(f"{label} must be at least 2x2 pixels to have a spectrum, got spatial size {(height, width)}")
        if self._size is not None and (height, width) != self._size:
            raise ValueError(
                f"{label} has image size {(height, width)} but the earlier images of this set have {self._size}; "
                f"every image of a set must have the same size (resize or crop them)"
            )
        dtype = _compute_dtype(x)
        with torch.no_grad():
            total = power_sum_op(x.detach().to(dtype), self.window).to(torch.float64)
        if self._sum is None:
            self._sum = total
            self._size = (height, width)
        else:
            self._sum += total.to(self._sum.device)
        if dtype == torch.float64:
            self._dtype = torch.float64
        self._count += x.shape[0]
        self._batches += 1

    def compute(self) -> RadialPowerSpectrum:
        """The mean radial power spectrum of every image seen; an error before the first update.

        Convention:
            See :func:`radial_power_spectrum`.

        Examples:
            >>> import torch
            >>> acc = RadialSpectrum(window=None)
            >>> acc.update(torch.ones(1, 1, 8, 8))
            >>> acc.compute().power                  # a flat image has no power
            tensor([0., 0., 0., 0.])
        """
        if self._sum is None or self._size is None:
            raise RuntimeError("RadialSpectrum.compute() called before any update()")
        height, width = self._size
        n_bins = self.n_bins if self.n_bins is not None else _default_n_bins(height, width)
        device = self._sum.device
        power, counts_d = radial_power_op(self._sum, width, n_bins, self._count)
        delta = 0.5 / n_bins
        freqs = torch.arange(1, n_bins + 1, dtype=torch.float64) * delta
        edges = torch.cat([torch.zeros(1, dtype=torch.float64), (torch.arange(1, n_bins + 1, dtype=torch.float64) + 0.5) * delta])
        return RadialPowerSpectrum(
            freqs=freqs.to(device=device, dtype=self._dtype),
            power=power.to(self._dtype),
            edges=edges.to(device=device, dtype=self._dtype),
            counts=counts_d,
            n_images=self._count,
            size=(height, width),
            window=self.window,
        )

    def __repr__(self) -> str:
        return f"RadialSpectrum(window={self.window!r}, n_bins={self.n_bins}, size={self._size}, count={self._count})"


def radial_power_spectrum(
    images: Union[torch.Tensor, Iterable[torch.Tensor]],
    *,
    window: Optional[str] = "hann",
    n_bins: Optional[int] = None,
) -> RadialPowerSpectrum:
    r"""Mean radially averaged power spectrum of a set of images.

    Convention:
        For each image and channel x (H x W): the window-weighted mean
        :math:`m = \sum w x / \sum w` is removed, the result multiplied by the separable periodic
        Hann window :math:`w(n, k) = h_H(n) h_W(k)`, :math:`h_N(n) = \sin^2(\pi n / N)`
        (``window="hann"``, which avoids the leakage of the image's edges; ``"none"``/``None``:
        plain mean removal, no window, the image is treated as periodic), and the power
        spectral density taken as

        .. math:: P(f) = |\mathrm{DFT}(w \cdot (x - m))(f)|^2 / \sum w^2

        (:math:`\sum w^2 = HW` without a window). With this normalisation the mean of P over the
        H x W DFT frequencies is the (window-weighted) variance of the image, so a spectrum does
        not depend on the image size: white noise of variance s² has P = s² at every frequency,
        at any size and with either window. DC carries no power after the mean removal. The
        channels' spectra are averaged (a gray image copied to three channels has the spectrum of
        the gray image), then the spectra of all images.

        Frequencies are radial, :math:`|f| = \sqrt{f_y^2 + f_x^2}` with :math:`f_y = k/H` and
        :math:`f_x = l/W` in cycles per pixel (so non-square images are measured in the same
        units along both axes). There are ``n_bins`` bins (default ``min(H, W) // 2``) of width
        :math:`\delta = 0.5 / n_{bins}` centred on :math:`\delta, 2\delta, ..., 0.5`: each
        non-zero DFT frequency goes to the nearest centre (halves up; the lowest bin also takes
        any frequency below δ/2), and the corners of the spectrum beyond :math:`0.5 + \delta/2`
        are left out. With the default bins and H = W = N, bin j holds the frequencies whose
        radius rounds to (j + 1)/N, the usual integer-radius profile. ``power[j]`` is the mean of P
        over the set and over the bin's DFT frequencies; an empty bin (possible with more bins
        than the default) is NaN.

        Values are not rescaled: the spectra are in the images' units squared, so compare sets
        in the same data range. float16/bfloat16 are computed in float32, float64 stays float64;
        the sums over images are float64. CPU and CUDA. No gradient (a measurement). The FFT
        work and the binning are PyTorch custom operators, so this function and
        :meth:`RadialSpectrum.update` compile with ``torch.compile(fullgraph=True)`` and give
        the eager values; :func:`spectral_deficit` returns Python floats, so call it on the
        accumulated spectra outside a compiled step.

    Args:
        images: a (B, C, H, W) tensor, or an iterable of such batches (e.g. a DataLoader), all
            of the same H and W (channel counts may differ); a tensor is transformed a chunk of
            images at a time, an iterable one batch at a time.
        window: ``"hann"`` (default) or ``"none"``/``None``.
        n_bins: number of frequency bins; ``None`` means ``min(H, W) // 2``.

    Returns:
        A :class:`RadialPowerSpectrum` (``freqs``, ``power``, ``edges``, ``counts``, ...), on the
        device of the (first) images.

    Examples:
        >>> import math, torch
        >>> n = torch.arange(32, dtype=torch.float64)
        >>> x = torch.cos(2 * math.pi * 4 * n / 32).expand(1, 1, 32, 32)  # 4 cycles across
        >>> s = radial_power_spectrum(x, window=None)
        >>> s.freqs[3].item(), int(s.power.argmax())                     # 4/32 cycles per pixel
        (0.125, 3)
    """
    acc = RadialSpectrum(window=window, n_bins=n_bins)
    _feed(acc, images, "images")
    return acc.compute()


def _feed(acc: RadialSpectrum, images: object, name: str) -> None:
    if isinstance(images, torch.Tensor):
        acc.update(images, name)
        return
    if isinstance(images, (str, bytes)) or not isinstance(images, Iterable):
        raise TypeError(
            f"{name} must be a (B, C, H, W) tensor, an iterable of such batches, or a RadialSpectrum, "
            f"got {type(images).__name__}"
        )
    for batch in images:
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
            batch = batch[0]  # (images, labels) batches of a DataLoader
        acc.update(batch, name)
    if acc.count == 0:
        raise ValueError(f"{name} is empty: the iterable gave no batch")


@dataclasses.dataclass(frozen=True)
class SpectralDeficit:
    """Two sets' radial power spectra, their ratio per band and the high-frequency deficit.

    Convention:
        ``ratio = images.power / reference.power`` per frequency bin (below 1 where the images
        have less power than the reference); ``deficit_db = 10 log10(P_ref / P_img)`` with P
        the mean power over ``band`` (:meth:`RadialPowerSpectrum.band_power`): positive when the
        images have less high-frequency power than the reference (blurrier), 0 for identical
        sets, negative for images with more (sharper or noisier). ``images_band_power`` and
        ``reference_band_power`` are the two P.

    Examples:
        >>> import torch
        >>> x = torch.rand(4, 1, 16, 16)
        >>> d = spectral_deficit(x, x)
        >>> d.deficit_db, d.band, d.freqs.shape
        (0.0, (0.25, 0.5), torch.Size([8]))
    """

    images: RadialPowerSpectrum
    reference: RadialPowerSpectrum
    ratio: torch.Tensor
    band: Tuple[float, float]
    deficit_db: float
    images_band_power: float
    reference_band_power: float

    @property
    def freqs(self) -> torch.Tensor:
        """Bin centres in cycles per pixel (those of both spectra)."""
        return self.images.freqs


SpectrumSource = Union[torch.Tensor, Iterable[torch.Tensor], RadialSpectrum, RadialPowerSpectrum]


def _spectrum_of(source: object, name: str, window: str, n_bins: Optional[int]) -> RadialPowerSpectrum:
    if isinstance(source, RadialPowerSpectrum):
        return source
    if isinstance(source, RadialSpectrum):
        if source.count == 0:
            raise ValueError(f"{name} is an empty RadialSpectrum (no update() yet)")
        return source.compute()
    acc = RadialSpectrum(window=window, n_bins=n_bins)
    _feed(acc, source, name)
    return acc.compute()


def spectral_deficit(
    images: SpectrumSource,
    reference: SpectrumSource,
    *,
    band: Tuple[float, float] = DEFAULT_BAND,
    window: Optional[str] = "hann",
    n_bins: Optional[int] = None,
) -> SpectralDeficit:
    r"""Unpaired blur of a set of images against a reference set: spectrum ratio and HF deficit in dB.

    .. math:: \mathrm{deficit} = 10 \log_{10} \frac{\bar P_{ref}(\mathrm{band})}{\bar P_{img}(\mathrm{band})}

    Convention:
        Both sets' spectra are those of :func:`radial_power_spectrum` (per-image window-weighted
        mean removal, periodic Hann window by default, power normalised by :math:`\sum w^2`,
        channels averaged, ``n_bins = min(H, W) // 2`` radial bins centred on
        :math:`\delta, ..., 0.5` cycles per pixel). :math:`\bar P(\mathrm{band})` is the mean
        power over the DFT frequencies of the bins whose centre lies in ``band`` (both ends
        included; default 0.25 to 0.5 cycles per pixel, the upper half of the frequencies up to
        Nyquist). The deficit is positive when the images have less power there than the
        reference, i.e. are blurrier; 0 dB for identical sets. A Gaussian blur of standard
        deviation σ pixels multiplies P by :math:`\exp(-4\pi^2\sigma^2 f^2)`. Nothing is paired:
        the two sets may hold different numbers of images, but their images must have the same
        (H, W), and both must use the same data range (the spectra are not rescaled).

    Args:
        images: the set to judge: a (B, C, H, W) tensor, an iterable of batches, a
            :class:`RadialSpectrum` already updated with the set, or a :class:`RadialPowerSpectrum`.
        reference: the real images, in any of the same forms.
        band: (low, high) in cycles per pixel, ``0 <= low < high <= 0.5``.
        window: for tensors and iterables: ``"hann"`` or ``"none"``/``None``.
        n_bins: for tensors and iterables: number of bins, ``None`` for ``min(H, W) // 2``.

    Returns:
        A :class:`SpectralDeficit` (``images``, ``reference`` spectra, ``ratio``, ``deficit_db``).

    Raises:
        ValueError: the sets' image sizes, windows or bins differ, or the band holds no bin.

    Examples:
        >>> import torch
        >>> sharp = torch.rand(8, 1, 32, 32)
        >>> blurred = torch.nn.functional.avg_pool2d(sharp, 3, stride=1, padding=1, count_include_pad=False)
        >>> spectral_deficit(blurred, sharp).deficit_db > 5     # much less power above 0.25 cycles/pixel
        True
    """
    window = _check_window(window)
    n_bins = _check_n_bins(n_bins)
    band = _check_band(band)
    img = _spectrum_of(images, "images", window, n_bins)
    ref = _spectrum_of(reference, "reference", window, n_bins)
    if img.size != ref.size:
        raise ValueError(
            f"images and reference must have the same image size (H, W) to compare their spectra, got "
            f"{img.size} for images and {ref.size} for reference; resize or crop one set"
        )
    if img.window != ref.window:
        raise ValueError(f"images and reference spectra use different windows: {img.window!r} and {ref.window!r}")
    if img.n_bins != ref.n_bins:
        raise ValueError(f"images and reference spectra have different numbers of bins: {img.n_bins} and {ref.n_bins}")
    img_band, ref_band = img.band_power(band), ref.band_power(band)
    if img_band > 0 and ref_band > 0:
        deficit = 10.0 * math.log10(ref_band / img_band)
    elif img_band == ref_band:
        deficit = 0.0
    else:
        deficit = math.inf if img_band == 0 else -math.inf
    ref_power = ref.power.to(img.power.device)
    dtype = torch.promote_types(img.power.dtype, ref_power.dtype)
    ratio = img.power.to(dtype) / ref_power.to(dtype)
    return SpectralDeficit(
        images=img,
        reference=ref,
        ratio=ratio,
        band=band,
        deficit_db=deficit,
        images_band_power=img_band,
        reference_band_power=ref_band,
    )


def plot_spectra(
    spectra: Union[RadialPowerSpectrum, Mapping[str, RadialPowerSpectrum]],
    reference: RadialPowerSpectrum,
    *,
    reference_label: str = "reference",
    band: Optional[Tuple[float, float]] = DEFAULT_BAND,
    title: Optional[str] = None,
    figure: Optional["Figure"] = None,
) -> "Figure":
    """Plot sets' radial power spectra against a reference's, and their ratio in dB.

    Convention:
        Top panel: mean power (log scale) against the bin centres in cycles per pixel, for the
        reference (black) and every set, with each set's number of images in the legend.
        Bottom panel: ``10 log10(power / reference power)`` per bin, 0 dB for the reference;
        below 0 means less power than the reference (blur). With a
        ``band``, it is shaded and every set's legend entry gives its :func:`spectral_deficit`
        over it. The figure is a plain :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot,
        no screen needed); save it with ``fig.savefig("spectra.png")``.

    Args:
        spectra: one :class:`RadialPowerSpectrum` (labelled "images") or a mapping label -> spectrum.
        reference: the reference set's spectrum; every set must have its image size and bins.
        reference_label: the reference's legend label.
        band: the band to shade and to compute the deficits over, or None for neither.
        title: an optional figure title.
        figure: a :class:`matplotlib.figure.Figure` or ``SubFigure`` to draw the two panels in
            (e.g. one part of a larger figure); None for a new 7 x 6.5 inch figure.

    Returns:
        The :class:`matplotlib.figure.Figure` (``figure`` when one was given).

    Examples:
        >>> import torch
        >>> ref = radial_power_spectrum(torch.rand(4, 1, 32, 32))
        >>> fig = plot_spectra({"same": ref}, ref)
        >>> [ax.get_xlabel() for ax in fig.axes][-1]
        'spatial frequency (cycles per pixel)'
    """
    require_extra("matplotlib", "plot", "plot_spectra")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(spectra, RadialPowerSpectrum):
        spectra = {"images": spectra}
    if not isinstance(reference, RadialPowerSpectrum):
        raise TypeError(f"reference must be a RadialPowerSpectrum, got {type(reference).__name__}")
    if not isinstance(spectra, Mapping) or not spectra:
        raise ValueError("spectra must be a RadialPowerSpectrum or a non-empty mapping label -> RadialPowerSpectrum")
    band = None if band is None else _check_band(band)
    ref_freqs = reference.freqs.detach().cpu().double().numpy()
    ref_power = reference.power.detach().cpu().double().numpy()

    if figure is None:
        fig = Figure(figsize=(7.0, 6.5), layout="constrained")
        FigureCanvasAgg(fig)
    else:
        fig = figure
    ax_p, ax_r = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    ax_p.semilogy(ref_freqs, ref_power, color="black", linewidth=2.0, label=f"{reference_label} (n={reference.n_images})")
    ax_r.axhline(0.0, color="black", linewidth=2.0)
    for label, spectrum in spectra.items():
        if not isinstance(spectrum, RadialPowerSpectrum):
            raise TypeError(f"spectra[{label!r}] must be a RadialPowerSpectrum, got {type(spectrum).__name__}")
        if spectrum.size != reference.size or spectrum.n_bins != reference.n_bins:
            raise ValueError(
                f"spectra[{label!r}] has image size {spectrum.size} and {spectrum.n_bins} bins, the reference "
                f"{reference.size} and {reference.n_bins}; they must agree"
            )
        power = spectrum.power.detach().cpu().double().numpy()
        legend = f"{label} (n={spectrum.n_images})"
        if band is not None:
            deficit = spectral_deficit(spectrum, reference, band=band).deficit_db
            legend += f", deficit {deficit:.2f} dB"
        (line,) = ax_p.semilogy(ref_freqs, power, label=legend)
        with_db = 10.0 * torch.log10(torch.from_numpy(power / ref_power)).numpy()
        ax_r.plot(ref_freqs, with_db, color=line.get_color(), label=label)
    if band is not None:
        for ax in (ax_p, ax_r):
            ax.axvspan(band[0], band[1], color="0.9", zorder=0)
        ax_p.plot([], [], color="0.85", linewidth=8, label=f"deficit band {band[0]:g}-{band[1]:g}")
    ax_p.set_ylabel("mean power (images' units squared)")
    ax_p.set_title("radially averaged power spectrum")
    ax_p.legend(fontsize="small")
    ax_p.grid(True, which="major", alpha=0.3)
    ax_r.set_ylabel("power / reference (dB)")
    ax_r.set_xlabel("spatial frequency (cycles per pixel)")
    ax_r.set_xlim(0.0, 0.5)
    ax_r.grid(True, alpha=0.3)
    if title is not None:
        fig.suptitle(title)
    return fig
