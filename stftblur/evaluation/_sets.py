"""Set-level (unpaired) evaluation: a folder of real images as a reference set, and the spectral
deficit of a folder of images against it (:func:`stftblur.metrics.spectral_deficit`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from stftblur._atomic import PathLike
from stftblur._checks import check_positive_int
from stftblur.errors import StftblurError
from stftblur.evaluation._inventory import _batches
from stftblur.io import ImageInfo, ImageReadError, find_images, probe_image, read_image
from stftblur.metrics.spectral import (
    DEFAULT_BAND,
    RadialPowerSpectrum,
    RadialSpectrum,
    SpectralDeficit,
    _check_band,
    spectral_deficit,
)

__all__ = ["ImageSetError", "ReferenceSet", "check_set_size", "spectral_summary"]


class ImageSetError(StftblurError, ValueError):
    """A set of images cannot be compared as a set: no image, or images of several sizes.

    Examples:
        >>> issubclass(ImageSetError, ValueError)
        True
    """


def _size_text(size: Tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _sizes_text(paths: Sequence[str], infos: Dict[str, ImageInfo]) -> str:
    """'28x28 (10 images, e.g. a.png), 32x32 (1 image, e.g. b.png)', most common first."""
    by_size: Dict[Tuple[int, int], List[str]] = {}
    for p in paths:
        by_size.setdefault((infos[p].height, infos[p].width), []).append(p)
    counts = Counter({s: len(v) for s, v in by_size.items()})
    return ", ".join(
        f"{_size_text(s)} ({n} image{'s' if n > 1 else ''}, e.g. {by_size[s][0]})" for s, n in counts.most_common()
    )


def check_set_size(name: str, paths: Sequence[str], infos: Dict[str, ImageInfo]) -> Optional[Tuple[int, int]]:
    """The one (H, W) of the probed images ``paths``; :class:`ImageSetError` naming the sizes if several.

    Convention:
        A radial power spectrum averages images of one size; ``name`` says which set in the
        message. None when ``paths`` is empty.

    Examples:
        >>> check_set_size("images", ["a.png"], {"a.png": ImageInfo(28, 28, 1)})
        (28, 28)
    """
    sizes = {(infos[p].height, infos[p].width) for p in paths}
    if len(sizes) > 1:
        raise ImageSetError(
            f"{name} holds images of several sizes: {_sizes_text(paths, infos)}; a spectrum needs one size "
            f"(resize or crop them)"
        )
    return next(iter(sizes)) if sizes else None


class ReferenceSet:
    """A folder of real images, summarised by its radial power spectrum, to compare sets with.

    Convention:
        The folder is listed (:func:`stftblur.io.find_images`, recursively) and every header is
        read when the object is made: files that cannot be read are recorded in ``unreadable``
        and left out; the others must all have one (H, W) (``size``), else
        :class:`ImageSetError`. Pixels are read (:func:`stftblur.io.read_image`, values in
        [0, 1], gray or RGB) ``batch_size`` images at a time into a
        :class:`stftblur.metrics.RadialSpectrum` the first time :meth:`spectrum` is called, so
        memory does not grow with the folder; the result is kept. ``band``, ``window`` and
        ``n_bins`` are the settings of :func:`stftblur.metrics.spectral_deficit` that every
        comparison with this set uses.

    Args:
        directory: the folder of reference images (any number, one size).
        band: (low, high) in cycles per pixel, the band of the deficit.
        window: ``"hann"`` or ``"none"``.
        n_bins: number of radial bins, None for ``min(H, W) // 2``.
        device: where the spectra are computed.
        batch_size: images read at a time.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for i in range(3):
        ...     Image.fromarray(np.random.default_rng(i).integers(0, 256, (16, 16), np.uint8)).save(d / f"{i}.png")
        >>> ref = ReferenceSet(d)
        >>> ref.size, len(ref.images), ref.spectrum().n_images, ref.spectrum().n_bins
        ((16, 16), 3, 3, 8)
    """

    def __init__(
        self,
        directory: PathLike,
        *,
        band: Tuple[float, float] = DEFAULT_BAND,
        window: Optional[str] = "hann",
        n_bins: Optional[int] = None,
        device: Union[str, torch.device] = "cpu",
        batch_size: int = 16,
    ) -> None:
        self.directory = Path(directory)
        self.band = _check_band(band)
        self._accumulator = RadialSpectrum(window=window, n_bins=n_bins)  # checks window and n_bins
        self.window = self._accumulator.window
        self.n_bins = self._accumulator.n_bins
        self.device = device
        self.batch_size = check_positive_int(batch_size, "batch_size")
        files, self.ignored = find_images(self.directory)
        self.unreadable: Dict[str, str] = {}
        self._infos: Dict[str, ImageInfo] = {}
        for p in files:
            try:
                self._infos[p] = probe_image(self.directory / p)
            except ImageReadError as e:
                self.unreadable[p] = e.reason
        self.images: List[str] = [p for p in files if p in self._infos]
        if not self.images:
            raise ImageSetError(
                f"reference set {self.directory}: no readable image ({len(files)} image files, "
                f"{len(self.ignored)} other files)"
            )
        size = check_set_size(f"reference set {self.directory}", self.images, self._infos)
        assert size is not None
        self.size: Tuple[int, int] = size
        self._spectrum: Optional[RadialPowerSpectrum] = None

    def spectrum(self) -> RadialPowerSpectrum:
        """The mean radial power spectrum of the readable images (computed once).

        Examples:
            >>> import tempfile, pathlib, numpy as np
            >>> from PIL import Image
            >>> d = pathlib.Path(tempfile.mkdtemp())
            >>> Image.fromarray(np.full((8, 8), 9, np.uint8)).save(d / "flat.png")
            >>> ReferenceSet(d).spectrum().power.abs().max().item() < 1e-12   # a flat image has no power
            True
        """
        if self._spectrum is None:
            for batch in _batches(self.images, self._infos, self.batch_size):
                arrays = []
                for p in batch:
                    try:
                        arrays.append(read_image(self.directory / p))
                    except ImageReadError as e:
                        self.unreadable[p] = e.reason
                if arrays:
                    x = torch.from_numpy(np.stack(arrays)).to(self.device)
                    self._accumulator.update(x, f"reference set {self.directory}")
            if self._accumulator.count == 0:
                raise ImageSetError(f"reference set {self.directory}: none of its {len(self.images)} images could be read")
            self._spectrum = self._accumulator.compute()
        return self._spectrum

    def check_size(self, name: str, size: Optional[Tuple[int, int]]) -> None:
        """:class:`ImageSetError` naming both sizes unless ``size`` (that of set ``name``) is :attr:`size`.

        Examples:
            >>> import tempfile, pathlib, numpy as np
            >>> from PIL import Image
            >>> d = pathlib.Path(tempfile.mkdtemp())
            >>> Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / "a.png")
            >>> try:
            ...     ReferenceSet(d).check_size("samples/", (28, 28))
            ... except ImageSetError as e:
            ...     print(str(e).split(";")[0].replace(str(d), "real/"))
            the images of samples/ are 28x28 but those of the reference set real/ are 8x8
        """
        if size is not None and size != self.size:
            raise ImageSetError(
                f"the images of {name} are {_size_text(size)} but those of the reference set {self.directory} are "
                f"{_size_text(self.size)}; the spectral deficit compares sets of one image size (resize or crop one set)"
            )

    def compare(self, images: RadialSpectrum) -> SpectralDeficit:
        """:func:`stftblur.metrics.spectral_deficit` of a set (its accumulator) against this one."""
        return spectral_deficit(images, self.spectrum(), band=self.band)

    def settings(self) -> Dict[str, Any]:
        """What the JSON report records about this set and the comparison's settings."""
        return {
            "directory": str(self.directory),
            "n_images": len(self.images),
            "image_size": list(self.size),
            "band": list(self.band),
            "window": self.window,
            "n_bins": self.n_bins if self.n_bins is not None else min(self.size) // 2,
        }

    def __repr__(self) -> str:
        return f"ReferenceSet({str(self.directory)!r}, images={len(self.images)}, size={self.size}, band={self.band})"


def spectral_summary(result: Optional[SpectralDeficit], reference: ReferenceSet) -> Dict[str, Any]:
    """The ``set_metrics`` section of a JSON report: ``spectral_deficit_db`` and its details.

    Convention:
        ``spectral_deficit_db`` is ``10 log10(P_ref / P_img)`` over ``band`` (positive: the
        images have less high-frequency power than the reference set, i.e. are blurrier); None
        when no image could be read. ``spectral_deficit`` records the settings, the counts, the
        band powers and, per frequency bin, the centres (``freqs``), both spectra and their
        ``ratio`` (images / reference).

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.eye(8, dtype=np.uint8) * 255).save(d / "a.png")
        >>> ref = ReferenceSet(d)
        >>> acc = RadialSpectrum(); acc.update(torch.eye(8)[None, None])
        >>> s = spectral_summary(ref.compare(acc), ref)
        >>> s["spectral_deficit_db"], s["spectral_deficit"]["n_images"], s["spectral_deficit"]["ratio"]
        (0.0, 1, [1.0, 1.0, 1.0, 1.0])
    """
    details: Dict[str, Any] = {
        "definition": "10 log10(reference band power / images band power): positive when the images have less "
        "power in the band than the reference set (blurrier), 0 for identical sets",
        "reference_set": str(reference.directory),
        **{k: v for k, v in reference.settings().items() if k != "directory"},
    }
    details["n_reference_images"] = details.pop("n_images")
    if result is None:
        return {"spectral_deficit_db": None, "spectral_deficit": {**details, "n_images": 0}}

    def floats(t: torch.Tensor) -> List[float]:
        return [float(v) for v in t.detach().cpu().double().tolist()]

    details.update(
        n_images=result.images.n_images,
        n_reference_images=result.reference.n_images,
        n_bins=result.images.n_bins,
        images_band_power=result.images_band_power,
        reference_band_power=result.reference_band_power,
        freqs=floats(result.freqs),
        ratio=floats(result.ratio),
        images_power=floats(result.images.power),
        reference_power=floats(result.reference.power),
    )
    return {"spectral_deficit_db": result.deficit_db, "spectral_deficit": details}
