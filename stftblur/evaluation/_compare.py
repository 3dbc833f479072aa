"""Several folders side by side: one row each (mean metrics, spectral deficit), one figure."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch

from stftblur import __version__
from stftblur._atomic import PathLike, atomic_write
from stftblur.evaluation._engine import evaluate_folder
from stftblur.evaluation._report import EvalReport, _json_safe
from stftblur.evaluation._sets import ReferenceSet
from stftblur.viz import save_figure

__all__ = ["Comparison", "compare_folders", "plot_comparison", "write_comparison_csv"]


@dataclasses.dataclass
class Comparison:
    """The evaluations of several folders (:class:`EvalReport`, one each), as one table.

    Convention:
        :meth:`rows` has one row per report, in order: ``folder`` (its path as given),
        ``images`` (image files found), ``pairs`` (with a reference folder), the mean of every
        metric (``lpc_si_mean``, ``psnr_mean``, ...; see :meth:`EvalReport.summary`) and, with a
        reference set, ``spectral_deficit_db`` (see :func:`stftblur.metrics.spectral_deficit`).
        Missing values are None. :meth:`to_dict` is the JSON document: the rows and every
        folder's full report.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for sub in ("a", "b"):
        ...     (d / sub).mkdir()
        ...     Image.fromarray(np.full((16, 16), 7, np.uint8)).save(d / sub / "x.png")
        >>> c = compare_folders([d / "a", d / "b"])
        >>> c.columns(), [r["lpc_si_mean"] for r in c.rows()]
        (['folder', 'images', 'lpc_si_mean'], [0.0, 0.0])
    """

    reports: List[EvalReport]
    reference_set: Optional[ReferenceSet] = None

    @property
    def with_reference(self) -> bool:
        """True when the folders were paired with a reference folder."""
        return any(r.reference_dir is not None for r in self.reports)

    def columns(self) -> List[str]:
        """The names of the columns of :meth:`rows`, in order."""
        metrics: List[str] = []
        for r in self.reports:
            metrics += [m for m in r.metrics if m not in metrics]
        return [
            "folder",
            "images",
            *(["pairs"] if self.with_reference else []),
            *(f"{m}_mean" for m in metrics),
            *(["spectral_deficit_db"] if self.reference_set is not None else []),
        ]

    def rows(self) -> List[Dict[str, Any]]:
        """One dict per folder with the keys of :meth:`columns`."""
        out = []
        for r in self.reports:
            summary = r.summary()
            row: Dict[str, Any] = {"folder": r.images_dir, "images": len(r.results)}
            if self.with_reference:
                row["pairs"] = sum(1 for x in r.results if x.reference is not None)
            for column in self.columns():
                if column.endswith("_mean"):
                    row[column] = summary.get(column[: -len("_mean")], {}).get("mean")
            if self.reference_set is not None:
                row["spectral_deficit_db"] = r.set_metrics().get("spectral_deficit_db")
            out.append(row)
        return out

    @property
    def bad(self) -> List[str]:
        """Every report's :attr:`EvalReport.bad` lines, prefixed with its folder (the reference
        set's unreadable files once)."""
        lines: List[str] = []
        for r in self.reports:
            for line in r.bad:
                if line.startswith("unreadable reference-set image"):
                    if line not in lines:
                        lines.append(line)
                else:
                    lines.append(f"{r.images_dir}: {line}")
        return lines

    def to_dict(self) -> Dict[str, Any]:
        """The JSON document: version, reference folder and set, columns, rows, every report."""
        return _json_safe(
            {
                "stftblur_version": __version__,
                "reference_dir": next((r.reference_dir for r in self.reports if r.reference_dir), None),
                "reference_set": None if self.reference_set is None else self.reference_set.settings(),
                "columns": self.columns(),
                "rows": self.rows(),
                "reports": [r.to_dict() for r in self.reports],
            }
        )


def compare_folders(
    folders: Sequence[PathLike],
    reference_dir: Optional[PathLike] = None,
    reference_set: Optional[ReferenceSet] = None,
    metrics: Optional[Sequence[str]] = None,
    device: Union[str, torch.device] = "cpu",
    batch_size: int = 16,
    progress: Optional[Callable[[int], None]] = None,
) -> Comparison:
    """Evaluate each folder (:func:`evaluate_folder`) with the same references and metrics.

    Convention:
        Every folder is paired with ``reference_dir`` by relative path (PSNR/SSIM) and compared
        with ``reference_set`` (spectral deficit; its spectrum is computed once). See
        :func:`evaluate_inventory` for the rest.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for sub in ("real", "copy"):
        ...     (d / sub).mkdir()
        ...     Image.fromarray(np.eye(16, dtype=np.uint8) * 255).save(d / sub / "x.png")
        >>> c = compare_folders([d / "copy"], reference_set=ReferenceSet(d / "real"))
        >>> c.rows()[0]["spectral_deficit_db"]
        0.0
    """
    return Comparison(
        [evaluate_folder(f, reference_dir, metrics, device, batch_size, progress, reference_set) for f in folders],
        reference_set,
    )


def write_comparison_csv(comparison: Comparison, path: PathLike) -> Path:
    """One CSV row per folder, the columns of :meth:`Comparison.columns`.

    Convention:
        As :func:`write_csv`: missing values are empty cells, floats are written with ``repr``.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.full((16, 16), 7, np.uint8)).save(d / "x.png")
        >>> print(write_comparison_csv(compare_folders([d]), d / "c.csv").read_text().split()[0])
        folder,images,lpc_si_mean
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    columns = comparison.columns()
    writer.writerow(columns)
    for row in comparison.rows():
        writer.writerow(
            ["" if row[c] is None else (repr(row[c]) if isinstance(row[c], float) else row[c]) for c in columns]
        )
    text = buffer.getvalue()
    return atomic_write(path, lambda tmp: tmp.write_bytes(text.encode()))


def plot_comparison(comparison: Comparison, path: PathLike, title: Optional[str] = None) -> Path:
    """Every folder's radial power spectrum against the reference set's, and their ratios, in one figure.

    Convention:
        :func:`stftblur.metrics.plot_spectra` with one line per folder (labelled with its path
        and, in the legend, its image count and spectral deficit) and the reference set in
        black; folders with no readable image are left out. :class:`ValueError` without a
        reference set.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> for sub in ("real", "copy"):
        ...     (d / sub).mkdir()
        ...     Image.fromarray(np.eye(16, dtype=np.uint8) * 255).save(d / sub / "x.png")
        >>> c = compare_folders([d / "copy"], reference_set=ReferenceSet(d / "real"))
        >>> plot_comparison(c, d / "spectra.png").read_bytes()[:4]
        b'\\x89PNG'
    """
    from stftblur.metrics.spectral import plot_spectra

    ref = comparison.reference_set
    if ref is None:
        raise ValueError("plot_comparison draws the folders' spectra against a reference set; the comparison has none")
    spectra = {r.images_dir: r.spectral.images for r in comparison.reports if r.spectral is not None}
    if not spectra:
        raise ValueError("no folder of the comparison has a readable image to draw the spectrum of")
    fig = plot_spectra(
        spectra,
        ref.spectrum(),
        reference_label=f"reference set {ref.directory}",
        band=ref.band,
        title=title,
    )
    return save_figure(fig, path)
