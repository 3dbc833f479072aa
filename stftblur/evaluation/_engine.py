"""The evaluation engine: registered metrics over tensors, and over folders of image files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch

from stftblur._atomic import PathLike
from stftblur._checks import check_positive_int
from stftblur.evaluation._inventory import Inventory, _batches, take_inventory
from stftblur.evaluation._report import EvalReport, ImageResult
from stftblur.evaluation._sets import ReferenceSet, check_set_size
from stftblur.io import ImageInfo, ImageReadError, probe_image, read_image
from stftblur.metrics._registry import METRICS, get_metric
from stftblur.metrics.spectral import RadialSpectrum

__all__ = [
    "check_metrics",
    "compute_metrics",
    "default_metrics",
    "evaluate_folder",
    "evaluate_inventory",
    "metric_settings",
]

#: What ``stftblur eval`` computes when no metric is named: these no-reference metrics, plus
#: every registered reference metric when there is a reference.
DEFAULT_NO_REFERENCE = ("lpc_si",)


def compute_metrics(
    images: torch.Tensor, references: Optional[torch.Tensor] = None, metrics: Sequence[str] = ("psnr", "ssim")
) -> Dict[str, torch.Tensor]:
    """The registered ``metrics`` of every image of a batch, shape (B,) each.

    Convention:
        Images (and references, of the same shape) in [0, 1]; see
        :class:`stftblur.metrics.Metric` for what each function receives. A metric that needs a
        reference raises :class:`ValueError` without one; one whose ``min_size`` the images are
        below raises too (:func:`evaluate_inventory` records that per image instead).

    Examples:
        >>> import torch
        >>> x = torch.zeros(2, 1, 16, 16)
        >>> [round(v, 4) for v in compute_metrics(x, x + 0.1, ["psnr"])["psnr"].tolist()]
        [20.0, 20.0]
    """
    out: Dict[str, torch.Tensor] = {}
    h, w = images.shape[-2:]
    for name in metrics:
        metric = get_metric(name)
        if metric.needs_reference and references is None:
            raise ValueError(f"metric {name!r} needs references")
        problem = metric.too_small(h, w)
        if problem is not None:
            raise ValueError(problem)
        out[name] = metric.fn(images, references if metric.needs_reference else None)
    return out


def default_metrics(with_reference: bool) -> Tuple[str, ...]:
    """``lpc_si``, plus every reference metric (``psnr``, ``ssim``) with a reference.

    Convention:
        The metrics ``stftblur eval`` computes when ``--metrics`` is not given.

    Examples:
        >>> default_metrics(False), default_metrics(True)
        (('lpc_si',), ('lpc_si', 'psnr', 'ssim'))
    """
    return DEFAULT_NO_REFERENCE + (
        tuple(n for n, m in METRICS.items() if m.needs_reference) if with_reference else ()
    )


def check_metrics(metrics: Sequence[str], with_reference: bool) -> Tuple[str, ...]:
    """Validate metric names; the reference metrics need a reference folder.

    Convention:
        Names are stripped and lower-cased; the result is in the order of the registry
        (:data:`stftblur.metrics.METRICS`) without duplicates. :class:`ValueError` names the
        bad metrics.

    Examples:
        >>> check_metrics(["psnr", "lpc_si"], with_reference=True)
        ('lpc_si', 'psnr')
    """
    known = tuple(METRICS)
    names = [m.strip().lower() for m in metrics if m.strip()]
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        raise ValueError(f"metrics must be a non-empty selection of {known}, got {list(metrics)}")
    if not with_reference:
        needing = [m for m in names if METRICS[m].needs_reference]
        if needing:
            raise ValueError(f"metrics {needing} need a reference folder")
    return tuple(m for m in known if m in names)


def metric_settings(metrics: Sequence[str]) -> Dict[str, Any]:
    """The exact settings of each metric as written to the JSON report.

    Convention:
        Images in [0, 1] (``data_range`` 1), float32; each metric's
        :attr:`~stftblur.metrics.Metric.settings`.

    Examples:
        >>> metric_settings(["psnr"])["psnr"]
        {'data_range': 1.0, 'over': 'all channels and pixels'}
    """
    out: Dict[str, Any] = {
        "images": "integers divided by their type's maximum (255, 65535), float TIFF kept; alpha dropped",
        "dtype": "float32",
    }
    for name in metrics:
        out[name] = dict(get_metric(name).settings)
    return out


# --------------------------------------------------------------------------- folders


def evaluate_folder(
    images_dir: PathLike,
    reference_dir: Optional[PathLike] = None,
    metrics: Optional[Sequence[str]] = None,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 16,
    progress: Optional[Callable[[int], None]] = None,
    reference_set: Optional[ReferenceSet] = None,
) -> EvalReport:
    """Evaluate every image of a folder, optionally against a reference folder and a reference set.

    Convention:
        :func:`take_inventory` followed by :func:`evaluate_inventory`; see the latter for the
        data range, the metric settings, the reference set and what happens to bad files.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.full((32, 32), 128, np.uint8)).save(d / "flat.png")
        >>> report = evaluate_folder(d)
        >>> report.results[0].values
        {'lpc_si': 0.0}
    """
    inv = take_inventory(images_dir, reference_dir)
    return evaluate_inventory(inv, metrics, device, batch_size, progress, reference_set)


@dataclasses.dataclass
class _Run:
    """The state of one :func:`evaluate_inventory` call, shared by its steps."""

    inventory: Inventory
    metrics: Tuple[str, ...]
    device: Union[str, torch.device]
    results: Dict[str, ImageResult]
    unreadable: Dict[str, str] = dataclasses.field(default_factory=dict)
    unreadable_refs: Dict[str, str] = dataclasses.field(default_factory=dict)
    mismatched: Dict[str, str] = dataclasses.field(default_factory=dict)
    infos: Dict[str, ImageInfo] = dataclasses.field(default_factory=dict)
    comparable: Set[str] = dataclasses.field(default_factory=set)  # reference probed fine, same size
    spectrum: Optional[RadialSpectrum] = None  # the images' spectrum, with a reference set

    @property
    def wants_reference(self) -> bool:
        return any(METRICS[m].needs_reference for m in self.metrics)

    def mark_unreadable(self, path: str, result: ImageResult, error: ImageReadError, reference: bool) -> None:
        store = self.unreadable_refs if reference else self.unreadable
        store[path] = error.reason
        result.errors.append(f"unreadable {'reference ' if reference else ''}{path}: {error.reason}")


def evaluate_inventory(
    inventory: Inventory,
    metrics: Optional[Sequence[str]] = None,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 16,
    progress: Optional[Callable[[int], None]] = None,
    reference_set: Optional[ReferenceSet] = None,
) -> EvalReport:
    """Compute the metrics of every image of an :class:`Inventory`, and its spectral deficit.

    Convention:
        Images are read by :func:`stftblur.io.read_image` (values in [0, 1], so ``data_range``
        is 1) and computed in float32 by the registered metrics (:data:`stftblur.metrics.METRICS`).
        Without a reference the default metric is LPC-SI (:func:`stftblur.metrics.lpc_si` with
        its default settings: whole-image FFT, border ``round(min(H, W) / 16)``, BT.601 luma);
        with one, PSNR and SSIM (Gaussian window 11, sigma 1.5, valid padding, mean over
        channels; :func:`stftblur.metrics.psnr` and :func:`stftblur.metrics.ssim`) of each image
        against its reference are added. Images of equal size and channel count are batched
        together. A file that cannot be read is recorded in ``unreadable``
        (``unreadable_references``); a pair whose sizes or channel counts differ is recorded in
        ``mismatched`` and gets no PSNR/SSIM (its LPC-SI is still computed); SSIM of an image
        smaller than the 11x11 window is an error on that image. Nothing raises for a bad file:
        the rest is evaluated. When only reference metrics are asked for (and there is no
        reference set), unpaired images are not read.

        With a ``reference_set`` (unpaired: any number of real images), the radial power
        spectrum of every readable image is accumulated from the same batches
        (:class:`stftblur.metrics.RadialSpectrum`) and compared with the set's
        (:func:`stftblur.metrics.spectral_deficit`, the set's band, window and bins):
        ``report.spectral`` and ``report.set_metrics()["spectral_deficit_db"]``. The images
        must all have the reference set's (H, W): :class:`ImageSetError`, naming both sizes,
        is raised after the headers are read and before any pixel is.

    Args:
        inventory: from :func:`take_inventory`.
        metrics: registered names, or None for :func:`default_metrics`.
        device: where to compute.
        batch_size: images per batch.
        progress: called with the number of images just finished (e.g. ``tqdm.update``).
        reference_set: a :class:`ReferenceSet` for the spectral deficit, or None.

    Returns:
        An :class:`EvalReport`.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> from stftblur.evaluation import take_inventory
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for sub in ("out", "ref"):
        ...     (d / sub).mkdir()
        ...     Image.fromarray(np.eye(16, dtype=np.uint8) * 255).save(d / sub / "x.png")
        >>> report = evaluate_inventory(take_inventory(d / "out", d / "ref"), ["psnr"])
        >>> report.results[0].values
        {'psnr': inf}
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    with_reference = inventory.reference_dir is not None
    metrics_t = check_metrics(default_metrics(with_reference) if metrics is None else metrics, with_reference)
    images = inventory.images
    if reference_set is None and all(METRICS[m].needs_reference for m in metrics_t):
        images = [p for p in images if p in inventory.pairs]  # only paired images have anything to compute
    run = _Run(inventory, metrics_t, device, {p: ImageResult(path=p, reference=inventory.pairs.get(p)) for p in images})

    for p in images:
        _probe(run, p)
    readable = [p for p in images if p in run.infos]
    if reference_set is not None:
        name = str(inventory.images_dir)
        reference_set.check_size(name, check_set_size(name, readable, run.infos))
        run.spectrum = RadialSpectrum(window=reference_set.window, n_bins=reference_set.n_bins)
    for batch in _batches(readable, run.infos, batch_size):
        _evaluate_batch(run, batch)
        if progress is not None:
            progress(len(batch))
    if progress is not None and len(images) > len(readable):
        progress(len(images) - len(readable))

    return EvalReport(
        images_dir=str(inventory.images_dir),
        reference_dir=None if inventory.reference_dir is None else str(inventory.reference_dir),
        metrics=metrics_t,
        settings=metric_settings(metrics_t),
        results=[run.results[p] for p in images],
        unreadable=run.unreadable,
        unreadable_references=run.unreadable_refs,
        mismatched=run.mismatched,
        unpaired_images=inventory.unpaired_images,
        unpaired_references=inventory.unpaired_references,
        ignored=inventory.ignored,
        ignored_references=inventory.ignored_references,
        reference_set=reference_set,
        spectral=reference_set.compare(run.spectrum) if run.spectrum is not None and run.spectrum.count else None,
    )


def _probe(run: _Run, p: str) -> None:
    """Read the headers of image ``p`` and of its reference; record sizes, notes, problems."""
    inv = run.inventory
    r = run.results[p]
    try:
        run.infos[p] = info = probe_image(inv.images_dir / p)
    except ImageReadError as e:
        run.mark_unreadable(p, r, e, reference=False)
        return
    r.height, r.width, r.channels = info.height, info.width, info.channels
    if info.note:
        r.notes.append(info.note)
    ref = inv.pairs.get(p)
    if ref is None:
        return
    assert inv.reference_dir is not None
    try:
        ref_info = probe_image(Path(inv.reference_dir) / ref)
    except ImageReadError as e:
        run.mark_unreadable(ref, r, e, reference=True)
        return
    if ref_info.note:
        r.notes.append(f"reference: {ref_info.note}")
    if (ref_info.channels, ref_info.height, ref_info.width) != (info.channels, info.height, info.width):
        msg = (
            f"size mismatch: image {info.height}x{info.width}x{info.channels} vs reference "
            f"{ref_info.height}x{ref_info.width}x{ref_info.channels} ({ref}); no PSNR/SSIM"
        )
        run.mismatched[p] = msg
        r.errors.append(msg)
    else:
        run.comparable.add(p)


def _evaluate_batch(run: _Run, batch: List[str]) -> None:
    """Read one batch of equal-sized images (and their references) and fill in their results."""
    inv = run.inventory
    arrays: List[np.ndarray] = []
    refs: List[Optional[np.ndarray]] = []
    kept: List[str] = []
    for p in batch:
        try:
            a = read_image(inv.images_dir / p)
        except ImageReadError as e:
            run.mark_unreadable(p, run.results[p], e, reference=False)
            continue
        ref_arr: Optional[np.ndarray] = None
        ref = run.results[p].reference
        if ref is not None and p in run.comparable and run.wants_reference:
            assert inv.reference_dir is not None
            try:
                ref_arr = read_image(Path(inv.reference_dir) / ref)
            except ImageReadError as e:
                run.mark_unreadable(ref, run.results[p], e, reference=True)
        kept.append(p)
        arrays.append(a)
        refs.append(ref_arr)
    if not kept:
        return
    x = torch.from_numpy(np.stack(arrays)).to(run.device)
    h, w = x.shape[-2:]
    if run.spectrum is not None:
        run.spectrum.update(x, str(inv.images_dir))
    with_ref = [i for i, r in enumerate(refs) if r is not None]
    y = torch.from_numpy(np.stack([refs[i] for i in with_ref])).to(run.device) if with_ref else None  # type: ignore[misc]
    values: Dict[str, List[Optional[float]]] = {}
    for name in run.metrics:
        metric = METRICS[name]
        rows = with_ref if metric.needs_reference else list(range(len(kept)))
        if not rows:
            continue
        problem = metric.too_small(h, w)
        if problem is not None:
            for i in rows:
                run.results[kept[i]].errors.append(problem)
            continue
        v = metric.fn(x[with_ref], y) if metric.needs_reference else metric.fn(x, None)
        column: List[Optional[float]] = [None] * len(kept)
        for i, value in zip(rows, v.tolist()):
            column[i] = value
        values[name] = column
    for i, p in enumerate(kept):
        r = run.results[p]
        for m in run.metrics:
            col = values.get(m)
            r.values[m] = None if col is None else col[i]
