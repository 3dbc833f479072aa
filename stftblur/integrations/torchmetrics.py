"""torchmetrics adapter: ``LPCSI`` and ``SpectralDeficit`` as ``torchmetrics.Metric`` subclasses.

Both keep their state in tensors reduced by ``dist_reduce_fx``, so torchmetrics' distributed
sync (DDP, Lightning) and :meth:`~torchmetrics.Metric.merge_state` give the value one process
would compute from all the images::

    from stftblur.integrations.torchmetrics import LPCSI, SpectralDeficit

    sharpness = LPCSI()                       # mean LPC-SI of generated images in [0, 1]
    deficit = SpectralDeficit()               # high-frequency power deficit in dB, as torchmetrics' FID:
    deficit.update(real_images, real=True)
    deficit.update(fake_images, real=False)
    deficit.compute()

Written against torchmetrics 1.x (``pip install 'stftblur[torchmetrics]'``).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import torch

from stftblur.integrations._common import require_framework

require_framework("torchmetrics", "torchmetrics", "stftblur.integrations.torchmetrics")

from torchmetrics import Metric  # noqa: E402
from torchmetrics.utilities.data import dim_zero_cat  # noqa: E402

from stftblur.metrics import RadialSpectrum, lpc_si, spectral_deficit  # noqa: E402
from stftblur.metrics.lpc_si import LPCSISettings  # noqa: E402
from stftblur.metrics.spectral import DEFAULT_BAND, RadialPowerSpectrum, _check_band  # noqa: E402

__all__ = ["LPCSI", "SpectralDeficit"]


class LPCSI(Metric):
    """Mean LPC-SI (no-reference sharpness, :func:`stftblur.metrics.lpc_si`) over every image seen.

    Convention:
        That of :func:`~stftblur.metrics.lpc_si` and its settings (images (B, 1 or 3, H, W) in
        [0, ``data_range``], BT.601 luma for colour, ``border`` left out). The states are the
        float64 sum of the per-image values and the number of images, both reduced by
        ``"sum"``: a distributed sync or :meth:`merge_state` gives the mean over every process's
        images, what one process computes from all of them (to float64 rounding). Images of
        different sizes may be mixed. :meth:`compute` returns a float64 scalar tensor; with no
        image seen it raises a :class:`RuntimeError`. Higher is sharper; not differentiable.

    Args:
        data_range: the value of white (1.0 for [0, 1] images).
        scales, scale_weights, C, beta_k, n_orientations, border: as in :func:`~stftblur.metrics.lpc_si`.
        **kwargs: the keyword arguments of :class:`torchmetrics.Metric` (``sync_on_compute``, ...).

    Examples:
        >>> import torch
        >>> metric = LPCSI()
        >>> x = torch.zeros(2, 1, 64, 64); x[..., 16:48, 16:48] = 1.0
        >>> metric.update(x)
        >>> bool(metric.compute() > 0.5), metric.higher_is_better
        (True, True)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    lpc_si_sum: torch.Tensor
    n_images: torch.Tensor

    def __init__(self, data_range: float = 1.0, scales: Sequence[float] = (1, 1.5, 2),
                 scale_weights: Sequence[float] = (1, -3, 2), C: float = 2.0, beta_k: float = 1e-4,
                 n_orientations: int = 8, border: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The validated LPC-SI settings (``stftblur.metrics.lpc_si.LPCSISettings``).
        self.settings = LPCSISettings.create(data_range, scales, scale_weights, C, beta_k, n_orientations, border)
        self.add_state("lpc_si_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_images", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, images: torch.Tensor) -> None:
        """Add a batch (B, C, H, W) of images in [0, ``data_range``]."""
        s = self.settings
        values = lpc_si(images, s.data_range, s.scales, s.scale_weights, s.C, s.beta_k, s.n_orientations, s.border)
        assert isinstance(values, torch.Tensor)
        self.lpc_si_sum += values.detach().to(self.lpc_si_sum.device, torch.float64).sum()
        self.n_images += values.numel()

    def compute(self) -> torch.Tensor:
        """The mean LPC-SI of every image seen (all processes after a sync)."""
        if int(self.n_images) == 0:
            raise RuntimeError("LPCSI.compute() needs images: update(images) was never called (or saw no image)")
        return self.lpc_si_sum / self.n_images

    def plot(self, val: Optional[Union[torch.Tensor, Sequence[torch.Tensor]]] = None, ax: Any = None) -> Any:
        """Plot one value or a sequence of values (``compute()`` if None); needs matplotlib."""
        return self._plot(val, ax)


# A record is one set's running spectrum, flattened into one float64 vector:
# [H, W, number of images, 1 if any batch was float64 else 0, the (H, W // 2 + 1) power-sum plane].
# Records of different sizes concatenate, so a list state reduced by "cat" syncs across
# processes whatever each holds; an empty record [0, 0, 0, 0] keeps every list non-empty (a
# process that saw nothing still sends a float64 tensor).
_HEADER = 4


def _empty_record(device: torch.device) -> torch.Tensor:
    return torch.zeros(_HEADER, dtype=torch.float64, device=device)


def _batch_record(images: torch.Tensor, window: str, n_bins: Optional[int], name: str) -> torch.Tensor:
    acc = RadialSpectrum(window=window, n_bins=n_bins)
    acc.update(images, name)  # every check of stftblur.metrics (shape, dtype, finite values, size)
    plane = acc._sum  # the float64 power-sum plane of the batch
    assert plane is not None and acc.size is not None
    head = torch.tensor([*acc.size, acc.count, float(acc._dtype == torch.float64)], dtype=torch.float64,
                        device=plane.device)
    return torch.cat([head, plane.reshape(-1)])


def _records(state: Union[torch.Tensor, List[torch.Tensor]]) -> List[torch.Tensor]:
    """The non-empty records of a state: a list of records, or their concatenation after a sync."""
    flat = dim_zero_cat(state) if isinstance(state, list) else state
    out, i = [], 0
    while i < flat.numel():
        h, w = int(flat[i]), int(flat[i + 1])
        end = i + _HEADER + h * (w // 2 + 1)
        if int(flat[i + 2]) > 0:
            out.append(flat[i:end])
        i = end
    return out


def _size(record: torch.Tensor) -> Tuple[int, int]:
    return int(record[0]), int(record[1])


class SpectralDeficit(Metric):
    """High-frequency power deficit (dB) of generated images against real ones, :func:`stftblur.metrics.spectral_deficit`.

    Convention:
        Unpaired, as torchmetrics' FID: :meth:`update` takes a batch and ``real=True`` for
        reference images or ``real=False`` for generated ones; :meth:`compute` is
        ``spectral_deficit(generated, real, band=band, window=window, n_bins=n_bins).deficit_db``
        over every image seen (positive: the generated images have less power in ``band``,
        i.e. are blurrier; 0 dB for identical sets). The state of each set is the float64 sum
        of its images' power spectra with its image size and count (a list state reduced by
        ``"cat"``), so a distributed sync or :meth:`merge_state` gives the single-process value
        (to float64 rounding; in one process the sums are those ``spectral_deficit`` forms from
        the same batches, and the value is the same number). All images of both sets must have
        the same (H, W). :meth:`compute` before both sets have an image raises a
        :class:`RuntimeError`; a per-batch ``forward`` has no meaning for two sets and raises
        too. Returns a float64 scalar tensor. Lower is better (less blur); not differentiable.

    Args:
        band: (low, high) in cycles per pixel (default the upper half up to Nyquist, 0.25 to 0.5).
        window: ``"hann"`` (default) or ``"none"``/``None``.
        n_bins: number of radial bins; None for ``min(H, W) // 2``.
        **kwargs: the keyword arguments of :class:`torchmetrics.Metric`.

    Examples:
        >>> import torch
        >>> sharp = torch.rand(8, 1, 32, 32)
        >>> blurred = torch.nn.functional.avg_pool2d(sharp, 3, stride=1, padding=1, count_include_pad=False)
        >>> metric = SpectralDeficit()
        >>> metric.update(sharp, real=True)
        >>> metric.update(blurred, real=False)
        >>> bool(metric.compute() > 5), metric.higher_is_better
        (True, False)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    real_spectrum: List[torch.Tensor]
    fake_spectrum: List[torch.Tensor]

    def __init__(self, band: Tuple[float, float] = DEFAULT_BAND, window: Optional[str] = "hann",
                 n_bins: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        probe = RadialSpectrum(window=window, n_bins=n_bins)  # checks window and n_bins
        self.band = _check_band(band)
        self.window = probe.window
        self.n_bins = probe.n_bins
        self.add_state("real_spectrum", default=[], dist_reduce_fx="cat")
        self.add_state("fake_spectrum", default=[], dist_reduce_fx="cat")
        self._add_empty_records()

    def _add_empty_records(self) -> None:
        for state in (self.real_spectrum, self.fake_spectrum):
            if not state:
                state.append(_empty_record(self.device))

    def reset(self) -> None:
        """Forget every image of both sets."""
        super().reset()
        self._add_empty_records()

    def update(self, images: torch.Tensor, real: bool) -> None:
        """Add a batch (B, C, H, W) to the real (``real=True``) or the generated set."""
        if not isinstance(real, bool):
            raise TypeError(f"real must be a bool (True for reference images, False for generated ones), got {real!r}")
        name = "real images" if real else "generated images"
        record = _batch_record(images, self.window, self.n_bins, name)
        state = self.real_spectrum if real else self.fake_spectrum
        for other, other_name in ((state, name), (self.fake_spectrum if real else self.real_spectrum, None)):
            seen = _records(other)
            if seen and _size(seen[-1]) != _size(record):
                which = other_name or ("generated images" if real else "real images")
                raise ValueError(
                    f"{name} have size {_size(record)} but the {which} seen before have {_size(seen[-1])}; every "
                    f"image of both sets must have the same (H, W)"
                )
        last = state[-1]
        if int(last[2]) > 0 and last.device == record.device:
            # One running record per set: the same float64 additions RadialSpectrum makes.
            head = torch.stack([last[0], last[1], last[2] + record[2], torch.maximum(last[3], record[3])])
            state[-1] = torch.cat([head, last[_HEADER:] + record[_HEADER:]])
        else:
            state.append(record)

    def _spectrum(self, state: Union[torch.Tensor, List[torch.Tensor]], name: str) -> RadialPowerSpectrum:
        records = _records(state)
        if not records:
            raise RuntimeError(
                f"SpectralDeficit.compute() needs both sets; no {name} were seen "
                f"(update(images, real={name == 'real images'}))"
            )
        sizes = sorted({_size(r) for r in records})
        if len(sizes) > 1:
            raise ValueError(f"the {name} of the processes have different sizes {sizes}; all must have one (H, W)")
        device = records[0].device
        total = records[0][_HEADER:].clone()
        for r in records[1:]:
            total += r[_HEADER:].to(device)
        h, w = sizes[0]
        acc = RadialSpectrum(window=self.window, n_bins=self.n_bins)
        acc._sum = total.reshape(h, w // 2 + 1)
        acc._size = (h, w)
        acc._count = sum(int(r[2]) for r in records)
        acc._dtype = torch.float64 if any(float(r[3]) > 0 for r in records) else torch.float32
        acc._batches = 1
        return acc.compute()

    def compute(self) -> torch.Tensor:
        """The deficit in dB of every generated image against every real one (all processes after a sync)."""
        fake = self._spectrum(self.fake_spectrum, "generated images")
        real = self._spectrum(self.real_spectrum, "real images")
        result = spectral_deficit(fake, real, band=self.band)
        return torch.tensor(result.deficit_db, dtype=torch.float64, device=self.device)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Not defined: the deficit compares two sets. Call :meth:`update` and :meth:`compute`."""
        raise RuntimeError(
            "SpectralDeficit has no per-batch value (it compares two sets of images): call "
            "update(images, real=...) for each batch and compute() at the end"
        )

    def plot(self, val: Optional[Union[torch.Tensor, Sequence[torch.Tensor]]] = None, ax: Any = None) -> Any:
        """Plot one value or a sequence of values (``compute()`` if None); needs matplotlib."""
        return self._plot(val, ax)
