"""The result of an evaluation: per-image values, what was skipped, the settings, summaries."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from stftblur import __version__

if TYPE_CHECKING:  # pragma: no cover
    from stftblur.evaluation._sets import ReferenceSet
    from stftblur.metrics.spectral import SpectralDeficit

__all__ = ["EvalReport", "ImageResult", "summarize"]


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
        paths to the size mismatch with their reference. With a ``reference_set`` (a
        :class:`ReferenceSet`), ``spectral`` is the :class:`~stftblur.metrics.SpectralDeficit`
        of the readable images against it (None if none could be read) and
        :meth:`set_metrics` its summary, with the key ``spectral_deficit_db``. :meth:`to_dict`
        is the JSON document that :func:`write_json` writes.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> from stftblur.evaluation import evaluate_folder
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
    reference_set: Optional["ReferenceSet"] = dataclasses.field(default=None, repr=False)
    spectral: Optional["SpectralDeficit"] = dataclasses.field(default=None, repr=False)

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
            *(
                f"unreadable reference-set image {p}: {e}"
                for p, e in (self.reference_set.unreadable.items() if self.reference_set is not None else ())
            ),
        ]

    def set_metrics(self) -> Dict[str, Any]:
        """Set-level results: ``{"spectral_deficit_db": ..., "spectral_deficit": {...}}`` with a
        reference set (see :func:`spectral_summary`), else empty."""
        if self.reference_set is None:
            return {}
        from stftblur.evaluation._sets import spectral_summary

        return spectral_summary(self.spectral, self.reference_set)

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
                "reference_set_dir": None if self.reference_set is None else str(self.reference_set.directory),
                "set_metrics": self.set_metrics(),
                "images": [dataclasses.asdict(r) for r in self.results],
                "unreadable": self.unreadable,
                "unreadable_references": self.unreadable_references,
                "mismatched": self.mismatched,
                "unpaired_images": self.unpaired_images,
                "unpaired_references": self.unpaired_references,
                "ignored_files": {"count": len(self.ignored), "paths": self.ignored},
                "ignored_reference_files": {"count": len(self.ignored_references), "paths": self.ignored_references},
                "unreadable_reference_set": {} if self.reference_set is None else dict(self.reference_set.unreadable),
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
