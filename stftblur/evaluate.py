"""Evaluate folders of restored or generated images: LPC-SI, and PSNR/SSIM against references.

The library behind ``stftblur eval``: find the images of a folder (recursively), read them
(PNG, JPEG, TIFF, BMP; gray or colour; 8 or 16 bits), pair them with a reference folder by
relative path, compute the metrics in batches of equal-sized images, summarise, and write JSON,
CSV and a plot. Nothing here prints: problems are recorded in the :class:`EvalReport`.
"""

from __future__ import annotations

import csv
from collections import Counter
import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch

from stftblur import __version__
from stftblur._checks import check_positive_int
from stftblur.metrics.fidelity import psnr, ssim
from stftblur.metrics.lpc_si import LUMA_WEIGHTS, LPCSISettings, _lpc_si, blur_effect

PathLike = Union[str, "os.PathLike[str]"]

#: File name endings read as images (case-insensitive); every other file is ignored and counted.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Metrics that need no reference, and those that do.
NO_REFERENCE_METRICS = ("lpc_si", "blur_effect")
REFERENCE_METRICS = ("psnr", "ssim")
METRICS = NO_REFERENCE_METRICS + REFERENCE_METRICS
#: SSIM settings used by the evaluator (those of :func:`stftblur.metrics.ssim`).
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
BLUR_EFFECT_H_SIZE = 11


class ImageReadError(ValueError):
    """A file that has an image extension but cannot be read as an image.

    Convention:
        ``str(error)`` is ``"<path>: <reason>"``; ``error.path`` is the path and
        ``error.reason`` the reason alone (what the evaluation report records).

    Examples:
        >>> e = ImageReadError("a/b.png", "truncated")
        >>> str(e), e.reason
        ('a/b.png: truncated', 'truncated')
    """

    def __init__(self, path: PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Discovery and reading
# --------------------------------------------------------------------------------------------


def find_images(root: PathLike) -> Tuple[List[str], List[str]]:
    """The image files under ``root`` (recursively) and the other files, as sorted relative paths.

    Convention:
        A file is an image when its name ends with one of :data:`IMAGE_EXTENSIONS` (any case)
        and no part of its relative path starts with ``"."`` (hidden files and folders, such as
        ``.ipynb_checkpoints``, are listed with the ignored files). Paths are relative to
        ``root`` and use ``/``. Nothing is opened. :class:`NotADirectoryError` if ``root`` is
        not a directory.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> (d / "sub").mkdir(); _ = (d / "sub" / "a.PNG").write_bytes(b""); _ = (d / "notes.txt").write_text("")
        >>> find_images(d)
        (['sub/a.PNG'], ['notes.txt'])
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    images: List[str] = []
    ignored: List[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            hidden = any(part.startswith(".") for part in rel.split("/"))
            if not hidden and name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(rel)
            else:
                ignored.append(rel)
    return sorted(images), sorted(ignored)


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the header of an image file says: size, channels after conversion, and a note.

    Convention:
        ``channels`` is what :func:`read_image` will return: 1 for gray (with or without
        alpha), 3 for everything else. ``note`` flags a file read with reduced precision.

    Examples:
        >>> ImageInfo(height=4, width=6, channels=1)
        ImageInfo(height=4, width=6, channels=1, note=None)
    """

    height: int
    width: int
    channels: int
    note: Optional[str] = None


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def _png_header(path: Path) -> Optional[Tuple[int, int]]:
    """(bit depth, colour type) from a PNG's IHDR, or None for another format."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return head[24], head[25]


_SIXTEEN_BIT_COLOUR_NOTE = (
    "16-bit colour PNG read at 8-bit precision (Pillow cannot decode more); save as TIFF to keep 16 bits"
)


def probe_image(path: PathLike) -> ImageInfo:
    """Read only the header of an image file; :class:`ImageReadError` if it is not one.

    Convention:
        TIFFs through tifffile (first page), everything else through Pillow; no pixel is
        decoded, so a file truncated after its header passes here and fails in
        :func:`read_image`. 16-bit colour PNGs get a note (Pillow decodes them at 8 bits).

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.png"
        >>> Image.fromarray(np.zeros((5, 7, 4), np.uint8)).save(p)
        >>> probe_image(p)
        ImageInfo(height=5, width=7, channels=3, note=None)
    """
    path = Path(path)
    try:
        if _is_tiff(path):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                arr_shape = dict(zip(page.axes, page.shape))
                samples = arr_shape.get("S", 1)
                return ImageInfo(arr_shape["Y"], arr_shape["X"], 1 if samples < 3 else 3)
        from PIL import Image

        with Image.open(path) as im:
            mode, (w, h) = im.mode, im.size
        channels = 1 if mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16") else 3
        note = None
        header = _png_header(path)
        if header is not None and header[0] == 16 and header[1] in (2, 6):
            note = _SIXTEEN_BIT_COLOUR_NOTE
        return ImageInfo(h, w, channels, note)
    except Exception as e:  # Pillow and tifffile raise many kinds of errors for bad files
        raise ImageReadError(path, f"cannot read as an image ({type(e).__name__}: {e})") from None


def _scale_integer(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32)
    raise ValueError(f"unsupported pixel type {arr.dtype}")


def read_image(path: PathLike) -> np.ndarray:
    """Read an image as float32 (C, H, W) with C = 1 (gray) or 3 (RGB), scaled to [0, 1].

    Convention:
        Integers are divided by the maximum of their type (255 for 8 bits, 65535 for 16
        bits); float TIFFs are kept as they are. Alpha is dropped, palettes are expanded,
        two-channel gray+alpha gives gray, CMYK and YCbCr are converted to RGB by Pillow. TIFFs
        are read with tifffile (first page; 16-bit colour kept), everything else with Pillow
        (which reads 16-bit colour PNGs at 8-bit precision; :func:`probe_image` notes those).
        Pixels are not rotated by EXIF orientation tags. :class:`ImageReadError` for a corrupt
        or unsupported file.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.png"
        >>> Image.fromarray(np.array([[0, 65535]], np.uint16)).save(p)
        >>> read_image(p)
        array([[[0., 1.]]], dtype=float32)
    """
    path = Path(path)
    try:
        if _is_tiff(path):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                arr = page.asarray()
                axes = page.axes
            if "S" in axes:
                arr = np.moveaxis(arr, axes.index("S"), -1)
            arr = arr.reshape(arr.shape[0], arr.shape[1], -1) if arr.ndim >= 2 else arr
            if arr.ndim != 3:
                raise ValueError(f"unsupported TIFF layout {axes} {page.shape}")
            arr = arr[..., :1] if arr.shape[-1] < 3 else arr[..., :3]
            out = _scale_integer(arr)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                mode = im.mode
                if mode in ("1", "L", "F") or mode.startswith("I;16"):
                    out = _scale_integer(np.asarray(im))[..., None]
                elif mode == "I":  # 32-bit integer container of 16-bit samples
                    out = (np.asarray(im).astype(np.float32) / np.float32(65535.0))[..., None]
                elif mode in ("LA", "La"):
                    out = _scale_integer(np.asarray(im.getchannel(0)))[..., None]
                else:
                    if mode not in ("RGB", "RGBA", "RGBa", "RGBX"):
                        im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
                    out = _scale_integer(np.asarray(im)[..., :3])
    except Exception as e:  # Pillow and tifffile raise many kinds of errors for bad files
        raise ImageReadError(path, f"cannot read as an image ({type(e).__name__}: {e})") from None
    return np.ascontiguousarray(np.moveaxis(out, -1, 0))


def pair_images(images: Sequence[str], references: Sequence[str]) -> Tuple[Dict[str, str], List[str], List[str]]:
    """Pair relative paths: the same path, else the same path without its extension.

    Convention:
        ``recon/a.png`` pairs with ``recon/a.png`` and, failing that, with the only reference
        whose path differs only by its extension (``recon/a.jpg``, ``recon/a.tif``). Ambiguous
        matches (two references with the stem, or two images claiming one reference) are left
        unpaired. Paths are compared as given (case-sensitive).

    Returns:
        (image -> reference, images without a reference, references without an image).

    Examples:
        >>> pair_images(["a.png", "b.png", "c.png"], ["a.png", "b.tif", "d.png"])
        ({'a.png': 'a.png', 'b.png': 'b.tif'}, ['c.png'], ['d.png'])
    """
    ref_set, image_set = set(references), set(images)
    by_stem: Dict[str, List[str]] = {}
    for r in references:
        if r not in image_set:  # a reference with an exact match is taken by that image
            by_stem.setdefault(os.path.splitext(r)[0], []).append(r)
    pairs: Dict[str, str] = {p: p for p in images if p in ref_set}
    by_stem_pairs: Dict[str, str] = {}
    for p in images:
        candidates = by_stem.get(os.path.splitext(p)[0], [])
        if p not in pairs and len(candidates) == 1:
            by_stem_pairs[p] = candidates[0]
    claimed = Counter(by_stem_pairs.values())
    pairs.update({p: r for p, r in by_stem_pairs.items() if claimed[r] == 1})
    used = set(pairs.values())
    return pairs, [p for p in images if p not in pairs], [r for r in references if r not in used]


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ImageResult:
    """The metrics of one image (None where a metric could not be computed, see ``errors``).

    Convention:
        ``path`` and ``reference`` are relative to their folders; ``values`` maps each metric
        name to a float (``inf`` for the PSNR of identical images) or None; ``errors`` say why
        a value is missing, ``notes`` flag a reduced precision.

    Examples:
        >>> ImageResult("a.png", values={"lpc_si": 0.9}).values
        {'lpc_si': 0.9}
    """

    path: str
    reference: Optional[str] = None
    height: Optional[int] = None
    width: Optional[int] = None
    channels: Optional[int] = None
    values: Dict[str, Optional[float]] = dataclasses.field(default_factory=dict)
    errors: List[str] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class EvalReport:
    """Everything an evaluation found: per-image results, what was skipped, and the settings.

    Convention:
        ``results`` has one entry per image that was looked at (unpaired images included when
        a no-reference metric was asked for), in path order. ``unreadable`` and
        ``unreadable_references`` map relative paths to the reason; ``mismatched`` maps image
        paths to the size mismatch with their reference. :meth:`to_dict` is the JSON document
        that :func:`write_json` writes.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.full((16, 16), 7, np.uint8)).save(d / "a.png")
        >>> report = evaluate_folder(d)
        >>> report.summary()["lpc_si"]["count"], report.bad
        (1, [])
    """

    images_dir: str
    reference_dir: Optional[str]
    metrics: Tuple[str, ...]
    settings: Dict[str, Any]
    results: List[ImageResult]
    unreadable: Dict[str, str]
    unreadable_references: Dict[str, str]
    mismatched: Dict[str, str]
    unpaired_images: List[str]
    unpaired_references: List[str]
    ignored: List[str]
    ignored_references: List[str]

    def summary(self) -> Dict[str, Dict[str, Optional[float]]]:
        """count, mean, std (sample), median, min and max of each metric (see :func:`summarize`)."""
        return {m: summarize([r.values.get(m) for r in self.results]) for m in self.metrics}

    @property
    def bad(self) -> List[str]:
        """One line per unreadable file (image or reference) and per size-mismatched pair."""
        return [
            *(f"unreadable image {p}: {e}" for p, e in self.unreadable.items()),
            *(f"unreadable reference {p}: {e}" for p, e in self.unreadable_references.items()),
            *(f"{p}: {e}" for p, e in self.mismatched.items()),
        ]

    def to_dict(self) -> Dict[str, Any]:
        """The JSON document (infinities, such as the PSNR of identical images, as ``"inf"``)."""
        return _json_safe(
            {
                "stftblur_version": __version__,
                "images_dir": self.images_dir,
                "reference_dir": self.reference_dir,
                "metrics": list(self.metrics),
                "settings": self.settings,
                "summary": self.summary(),
                "images": [dataclasses.asdict(r) for r in self.results],
                "unreadable": self.unreadable,
                "unreadable_references": self.unreadable_references,
                "mismatched": self.mismatched,
                "unpaired_images": self.unpaired_images,
                "unpaired_references": self.unpaired_references,
                "ignored_files": {"count": len(self.ignored), "paths": self.ignored},
                "ignored_reference_files": {"count": len(self.ignored_references), "paths": self.ignored_references},
            }
        )


def summarize(values: Iterable[Optional[float]]) -> Dict[str, Optional[float]]:
    """count, mean, std (sample, n - 1), median, min, max of the values that are not None.

    Convention:
        NaN values are left out; infinite values are kept (a mean with +inf is inf). With no
        value every statistic is None; with one value the std is None. Computed in float64.

    Examples:
        >>> summarize([1.0, 3.0, None, 5.0])
        {'count': 3, 'mean': 3.0, 'std': 2.0, 'median': 3.0, 'min': 1.0, 'max': 5.0}
    """
    v = np.array([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return {"count": 0, "mean": None, "std": None, "median": None, "min": None, "max": None}
    with np.errstate(invalid="ignore"):
        std = float(np.std(v, ddof=1)) if v.size > 1 else None
    return {
        "count": int(v.size),
        "mean": float(np.mean(v)),
        "std": std,
        "median": float(np.median(v)),
        "min": float(np.min(v)),
        "max": float(np.max(v)),
    }


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


def metric_settings(metrics: Sequence[str], lpc: Optional[LPCSISettings] = None) -> Dict[str, Any]:
    """The exact settings of each metric as written to the JSON report.

    Convention:
        Images in [0, 1] (``data_range`` 1), float32; LPC-SI with ``lpc`` (default settings
        when None); PSNR and SSIM as :func:`evaluate_inventory` computes them.

    Examples:
        >>> metric_settings(["psnr"])["psnr"]
        {'data_range': 1.0, 'over': 'all channels and pixels'}
    """
    lpc = lpc or LPCSISettings.create(data_range=1.0)
    out: Dict[str, Any] = {
        "images": "integers divided by their type's maximum (255, 65535), float TIFF kept; alpha dropped",
        "dtype": "float32",
    }
    if "lpc_si" in metrics:
        out["lpc_si"] = {
            **lpc.as_dict(),
            "border_rule": "round(min(H, W) / 16) when border is None",
            "luma": list(LUMA_WEIGHTS),
        }
    if "blur_effect" in metrics:
        out["blur_effect"] = {"h_size": BLUR_EFFECT_H_SIZE, "luma": "skimage rgb2gray (0.2125, 0.7154, 0.0721)"}
    if "psnr" in metrics:
        out["psnr"] = {"data_range": 1.0, "over": "all channels and pixels"}
    if "ssim" in metrics:
        out["ssim"] = {
            "data_range": 1.0,
            "window": "gaussian",
            "window_size": SSIM_WINDOW,
            "sigma": SSIM_SIGMA,
            "padding": "valid",
            "covariance": "population",
            "channels": "mean over channels",
        }
    return out


def check_metrics(metrics: Sequence[str], with_reference: bool) -> Tuple[str, ...]:
    """Validate metric names; the reference metrics need a reference folder.

    Convention:
        Names are stripped and lower-cased; the result is in the order of :data:`METRICS`
        without duplicates. :class:`ValueError` names the bad metrics.

    Examples:
        >>> check_metrics(["psnr", "lpc_si"], with_reference=True)
        ('lpc_si', 'psnr')
    """
    names = [m.strip().lower() for m in metrics if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise ValueError(f"metrics must be a non-empty selection of {METRICS}, got {list(metrics)}")
    if not with_reference:
        needing = [m for m in names if m in REFERENCE_METRICS]
        if needing:
            raise ValueError(f"metrics {needing} need a reference folder")
    return tuple(m for m in METRICS if m in names)


def _batches(items: Sequence[str], infos: Dict[str, ImageInfo], batch_size: int) -> Iterator[List[str]]:
    """Items grouped by (channels, height, width), in order of first appearance, then chunked."""
    groups: Dict[Tuple[int, int, int], List[str]] = {}
    for p in items:
        i = infos[p]
        groups.setdefault((i.channels, i.height, i.width), []).append(p)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


@dataclasses.dataclass
class Inventory:
    """The files of an evaluation before anything is read: images, references and their pairing.

    Convention:
        Relative paths as :func:`find_images` gives them; ``pairs`` maps an image to its
        reference as :func:`pair_images` decides. Without a reference folder the reference
        fields are empty.

    Examples:
        >>> Inventory(Path("in"), None, ["a.png"], []).pairs
        {}
    """

    images_dir: Path
    reference_dir: Optional[Path]
    images: List[str]
    ignored: List[str]
    references: List[str] = dataclasses.field(default_factory=list)
    ignored_references: List[str] = dataclasses.field(default_factory=list)
    pairs: Dict[str, str] = dataclasses.field(default_factory=dict)
    unpaired_images: List[str] = dataclasses.field(default_factory=list)
    unpaired_references: List[str] = dataclasses.field(default_factory=list)


def take_inventory(images_dir: PathLike, reference_dir: Optional[PathLike] = None) -> Inventory:
    """List the images of ``images_dir`` (and ``reference_dir``) and pair them (:func:`pair_images`).

    Convention:
        Only names are listed (see :func:`find_images`); :class:`NotADirectoryError` for a
        missing folder.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> take_inventory(d).images
        []
    """
    images, ignored = find_images(images_dir)
    inv = Inventory(Path(images_dir), None if reference_dir is None else Path(reference_dir), images, ignored)
    if reference_dir is not None:
        inv.references, inv.ignored_references = find_images(reference_dir)
        inv.pairs, inv.unpaired_images, inv.unpaired_references = pair_images(images, inv.references)
    return inv


def default_metrics(with_reference: bool) -> Tuple[str, ...]:
    """``lpc_si``, plus ``psnr`` and ``ssim`` with a reference.

    Convention:
        The metrics ``stftblur eval`` computes when ``--metrics`` is not given.

    Examples:
        >>> default_metrics(False), default_metrics(True)
        (('lpc_si',), ('lpc_si', 'psnr', 'ssim'))
    """
    return ("lpc_si",) + (REFERENCE_METRICS if with_reference else ())


def evaluate_folder(
    images_dir: PathLike,
    reference_dir: Optional[PathLike] = None,
    metrics: Optional[Sequence[str]] = None,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 16,
    progress: Optional[Callable[[int], None]] = None,
) -> EvalReport:
    """Evaluate every image of a folder, optionally against a reference folder.

    Convention:
        :func:`take_inventory` followed by :func:`evaluate_inventory`; see the latter for the
        data range, the metric settings and what happens to bad files.

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
    return evaluate_inventory(inv, metrics, device, batch_size, progress)


def evaluate_inventory(
    inventory: Inventory,
    metrics: Optional[Sequence[str]] = None,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 16,
    progress: Optional[Callable[[int], None]] = None,
) -> EvalReport:
    """Compute the metrics of every image of an :class:`Inventory`.

    Convention:
        Images are read by :func:`read_image` (values in [0, 1], so ``data_range`` is 1) and
        computed in float32. Without a reference the default metric is LPC-SI
        (:func:`stftblur.metrics.lpc_si` with its default settings: whole-image FFT, border
        ``round(min(H, W) / 16)``, BT.601 luma); with one, PSNR and SSIM (Gaussian window 11,
        sigma 1.5, valid padding, mean over channels; :func:`stftblur.metrics.psnr` and
        :func:`stftblur.metrics.ssim`) of each image against its reference are added. Images
        of equal size and channel count are batched together. A file that cannot be read is
        recorded in ``unreadable`` (``unreadable_references``); a pair whose sizes or channel
        counts differ is recorded in ``mismatched`` and gets no PSNR/SSIM (its LPC-SI is still
        computed); SSIM of an image smaller than the 11x11 window is an error on that image.
        Nothing raises for a bad file: the rest is evaluated. When only reference metrics are
        asked for, unpaired images are not read.

    Args:
        inventory: from :func:`take_inventory`.
        metrics: names from :data:`METRICS`, or None for :func:`default_metrics`.
        device: where to compute.
        batch_size: images per batch.
        progress: called with the number of images just finished (e.g. ``tqdm.update``).

    Returns:
        An :class:`EvalReport`.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for sub in ("out", "ref"):
        ...     (d / sub).mkdir()
        ...     Image.fromarray(np.eye(16, dtype=np.uint8) * 255).save(d / sub / "x.png")
        >>> report = evaluate_inventory(take_inventory(d / "out", d / "ref"), ["psnr"])
        >>> report.results[0].values
        {'psnr': inf}
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    reference_dir = inventory.reference_dir
    with_reference = reference_dir is not None
    metrics_t = check_metrics(default_metrics(with_reference) if metrics is None else metrics, with_reference)
    lpc_settings = LPCSISettings.create(data_range=1.0)
    images_dir, pairs = inventory.images_dir, inventory.pairs
    images = inventory.images
    if not any(m in NO_REFERENCE_METRICS for m in metrics_t):
        images = [p for p in images if p in pairs]  # only paired images have anything to compute

    results = {p: ImageResult(path=p, reference=pairs.get(p)) for p in images}
    unreadable: Dict[str, str] = {}
    unreadable_refs: Dict[str, str] = {}
    mismatched: Dict[str, str] = {}
    infos: Dict[str, ImageInfo] = {}
    comparable: Set[str] = set()  # images whose reference was probed fine and has the same size
    for p in images:
        try:
            infos[p] = info = probe_image(images_dir / p)
        except ImageReadError as e:
            _unreadable(unreadable, p, results[p], e, "")
            continue
        r = results[p]
        r.height, r.width, r.channels = info.height, info.width, info.channels
        if info.note:
            r.notes.append(info.note)
        ref = pairs.get(p)
        if ref is None:
            continue
        assert reference_dir is not None
        try:
            ref_info = probe_image(Path(reference_dir) / ref)
        except ImageReadError as e:
            _unreadable(unreadable_refs, ref, r, e, "reference ")
            continue
        if ref_info.note:
            r.notes.append(f"reference: {ref_info.note}")
        if (ref_info.channels, ref_info.height, ref_info.width) != (info.channels, info.height, info.width):
            msg = (
                f"size mismatch: image {info.height}x{info.width}x{info.channels} vs reference "
                f"{ref_info.height}x{ref_info.width}x{ref_info.channels} ({ref}); no PSNR/SSIM"
            )
            mismatched[p] = msg
            r.errors.append(msg)
        else:
            comparable.add(p)

    readable = [p for p in images if p in infos]
    for batch in _batches(readable, infos, batch_size):
        _evaluate_batch(
            batch, results, images_dir, reference_dir, comparable, metrics_t, lpc_settings, device, unreadable, unreadable_refs
        )
        if progress is not None:
            progress(len(batch))
    if progress is not None and len(images) > len(readable):
        progress(len(images) - len(readable))

    return EvalReport(
        images_dir=str(images_dir),
        reference_dir=None if reference_dir is None else str(reference_dir),
        metrics=metrics_t,
        settings=metric_settings(metrics_t, lpc_settings),
        results=[results[p] for p in images],
        unreadable=unreadable,
        unreadable_references=unreadable_refs,
        mismatched=mismatched,
        unpaired_images=inventory.unpaired_images,
        unpaired_references=inventory.unpaired_references,
        ignored=inventory.ignored,
        ignored_references=inventory.ignored_references,
    )


def _evaluate_batch(
    batch: List[str],
    results: Dict[str, ImageResult],
    images_dir: Path,
    reference_dir: Optional[PathLike],
    comparable: Set[str],
    metrics: Tuple[str, ...],
    lpc_settings: LPCSISettings,
    device: Union[str, torch.device],
    unreadable: Dict[str, str],
    unreadable_refs: Dict[str, str],
) -> None:
    """Read one batch of equal-sized images (and their references) and fill in their results."""
    arrays: List[np.ndarray] = []
    refs: List[Optional[np.ndarray]] = []
    kept: List[str] = []
    for p in batch:
        try:
            a = read_image(images_dir / p)
        except ImageReadError as e:
            _unreadable(unreadable, p, results[p], e, "")
            continue
        ref_arr: Optional[np.ndarray] = None
        ref = results[p].reference
        if ref is not None and p in comparable and any(m in REFERENCE_METRICS for m in metrics):
            assert reference_dir is not None
            try:
                ref_arr = read_image(Path(reference_dir) / ref)
            except ImageReadError as e:
                _unreadable(unreadable_refs, ref, results[p], e, "reference ")
        kept.append(p)
        arrays.append(a)
        refs.append(ref_arr)
    if not kept:
        return
    x = torch.from_numpy(np.stack(arrays)).to(device)
    _, _, h, w = x.shape
    values: Dict[str, List[Optional[float]]] = {}
    if "lpc_si" in metrics:
        v = _lpc_si(x, lpc_settings, False)
        assert isinstance(v, torch.Tensor)
        values["lpc_si"] = v.tolist()
    if "blur_effect" in metrics:
        values["blur_effect"] = blur_effect(x, h_size=BLUR_EFFECT_H_SIZE).tolist()
    with_ref = [i for i, r in enumerate(refs) if r is not None]
    if with_ref and any(m in REFERENCE_METRICS for m in metrics):
        y = torch.from_numpy(np.stack([refs[i] for i in with_ref])).to(device)  # type: ignore[misc]
        xs = x[with_ref]
        if "psnr" in metrics:
            _scatter(values, "psnr", with_ref, psnr(xs, y).tolist(), len(kept))
        if "ssim" in metrics:
            if min(h, w) >= SSIM_WINDOW:
                _scatter(values, "ssim", with_ref, ssim(xs, y, window_size=SSIM_WINDOW, sigma=SSIM_SIGMA).tolist(), len(kept))
            else:
                for i in with_ref:
                    results[kept[i]].errors.append(f"ssim needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, image is {h}x{w}")
    for i, p in enumerate(kept):
        r = results[p]
        for m in metrics:
            col = values.get(m)
            r.values[m] = None if col is None else col[i]


def _unreadable(store: Dict[str, str], path: str, result: ImageResult, error: ImageReadError, what: str) -> None:
    """Record an unreadable image (``what=""``) or reference (``what="reference "``)."""
    store[path] = error.reason
    result.errors.append(f"unreadable {what}{path}: {error.reason}")


def _scatter(values: Dict[str, List[Optional[float]]], name: str, index: List[int], vals: List[float], n: int) -> None:
    col: List[Optional[float]] = [None] * n
    for i, v in zip(index, vals):
        col[i] = v
    values[name] = col


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def write_json(report: EvalReport, path: PathLike) -> Path:
    """Write :meth:`EvalReport.to_dict` as indented JSON.

    Convention:
        Strict JSON: infinities are the strings ``"inf"``/``"-inf"``. Parent folders are
        created; an existing file is replaced (the CLI refuses that without ``--force``).

    Examples:
        >>> import tempfile, pathlib, json, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.full((16, 16), 7, np.uint8)).save(d / "a.png")
        >>> path = write_json(evaluate_folder(d), d / "out" / "report.json")
        >>> json.loads(path.read_text())["summary"]["lpc_si"]["mean"]
        0.0
    """
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return path


def write_csv(report: EvalReport, path: PathLike) -> Path:
    """One row per image: path, reference, height, width, channels, each metric, errors, notes.

    Convention:
        Missing values are empty cells; floats are written with ``repr`` (full precision,
        ``inf`` for infinities); several errors or notes are joined with ``"; "``.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.full((16, 16), 7, np.uint8)).save(d / "a.png")
        >>> print(write_csv(evaluate_folder(d), d / "r.csv").read_text().strip())
        path,reference,height,width,channels,lpc_si,errors,notes
        a.png,,16,16,1,0.0,,
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "reference", "height", "width", "channels", *report.metrics, "errors", "notes"])
        for r in report.results:
            writer.writerow(
                [
                    r.path,
                    r.reference or "",
                    "" if r.height is None else r.height,
                    "" if r.width is None else r.width,
                    "" if r.channels is None else r.channels,
                    *["" if r.values.get(m) is None else repr(r.values[m]) for m in report.metrics],
                    "; ".join(r.errors),
                    "; ".join(r.notes),
                ]
            )
    return path


def plot_report(report: EvalReport, path: PathLike) -> Path:
    """Draw the per-image distribution of each metric (histogram with the mean and median) to a PNG.

    Convention:
        One panel per metric; infinite values are counted in the title and left out of the
        histogram. Uses matplotlib's object API (no pyplot state, no display needed); the
        format follows the extension of ``path``.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.full((16, 16), 7, np.uint8)).save(d / "a.png")
        >>> plot_report(evaluate_folder(d), d / "plot.png").read_bytes()[:4]
        b'\\x89PNG'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = report.metrics
    fig = Figure(figsize=(4.2 * len(metrics), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        v = np.array([r.values.get(m) for r in report.results if r.values.get(m) is not None], dtype=np.float64)
        finite = v[np.isfinite(v)]
        if finite.size:
            ax.hist(finite, bins=min(30, max(5, finite.size // 3)), color="#4c72b0", alpha=0.85)
            ax.axvline(float(np.mean(finite)), color="#c44e52", label=f"mean {np.mean(finite):.4g}")
            ax.axvline(float(np.median(finite)), color="#55a868", linestyle="--", label=f"median {np.median(finite):.4g}")
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        extra = f", {v.size - finite.size} infinite" if v.size > finite.size else ""
        ax.set_title(f"{m} (n={v.size}{extra})")
        ax.set_xlabel(m)
        ax.set_ylabel("images")
    fig.suptitle(Path(report.images_dir).name or report.images_dir)
    fig.savefig(path, dpi=100)
    return path
