"""Writing an :class:`~stftblur.evaluation.EvalReport`: JSON, CSV and a plot, each atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from stftblur._atomic import PathLike, atomic_write
from stftblur.evaluation._report import EvalReport
from stftblur.errors import require_extra
from stftblur.viz import save_figure

if TYPE_CHECKING:  # pragma: no cover
    from stftblur.evaluation._compare import Comparison

__all__ = ["plot_report", "write_csv", "write_json"]


def write_json(report: Union[EvalReport, "Comparison"], path: PathLike) -> Path:
    """Write :meth:`EvalReport.to_dict` (or :meth:`Comparison.to_dict`) as indented JSON.

    Convention:
        Strict JSON: infinities are the strings ``"inf"``/``"-inf"``. Parent folders are
        created; an existing file is replaced (the CLI refuses that without ``--force``), atomically
        (:func:`stftblur._atomic.atomic_write`), as by every writer of this module.

    Examples:
        >>> import tempfile, pathlib, json, numpy as np
        >>> from PIL import Image
        >>> from stftblur.evaluation import evaluate_folder
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.full((16, 16), 7, np.uint8)).save(d / "a.png")
        >>> path = write_json(evaluate_folder(d), d / "out" / "report.json")
        >>> json.loads(path.read_text())["summary"]["lpc_si"]["mean"]
        0.0
    """
    text = json.dumps(report.to_dict(), indent=2) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_csv(report: EvalReport, path: PathLike) -> Path:
    """One row per image: path, reference, height, width, channels, each metric, errors, notes.

    Convention:
        Missing values are empty cells; floats are written with ``repr`` (full precision,
        ``inf`` for infinities); several errors or notes are joined with ``"; "``.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> from stftblur.evaluation import evaluate_folder
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.full((16, 16), 7, np.uint8)).save(d / "a.png")
        >>> print(write_csv(evaluate_folder(d), d / "r.csv").read_text().strip())
        path,reference,height,width,channels,lpc_si,errors,notes
        a.png,,16,16,1,0.0,,
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
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
    text = buffer.getvalue()
    return atomic_write(path, lambda tmp: tmp.write_bytes(text.encode()))


def plot_report(report: EvalReport, path: PathLike) -> Path:
    """Draw the per-image distribution of each metric (histogram with the mean and median) to a
    PNG, and, with a reference set, the two sets' spectra and their ratio.

    Convention:
        One panel per metric; infinite values are counted in the title and left out of the
        histogram. With ``report.spectral`` (a reference set was given), the histograms stand in
        a column on the left and :func:`stftblur.metrics.plot_spectra` draws, on the right, the
        mean radial power spectrum (log scale) of the images and of the reference set against
        the frequency in cycles per pixel, their ratio in dB below, and the deficit band shaded.
        Uses matplotlib's object API (no pyplot state, no display needed); the format follows
        the extension of ``path``.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> from stftblur.evaluation import evaluate_folder
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> Image.fromarray(np.full((16, 16), 7, np.uint8)).save(d / "a.png")
        >>> plot_report(evaluate_folder(d), d / "plot.png").read_bytes()[:4]
        b'\\x89PNG'
    """
    require_extra("matplotlib", "plot", "plot_report (stftblur eval --plot)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from stftblur.metrics.spectral import plot_spectra

    metrics = report.metrics
    name = Path(report.images_dir).name or report.images_dir
    if report.spectral is None:
        fig = Figure(figsize=(4.2 * len(metrics), 3.4), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    else:
        assert report.reference_set is not None
        fig = Figure(figsize=(4.4 + 7.0, max(6.5, 3.0 * len(metrics))), layout="constrained")
        FigureCanvasAgg(fig)
        left, right = fig.subfigures(1, 2, width_ratios=(4.4, 7.0))
        axes = left.subplots(len(metrics), 1, squeeze=False)[:, 0]
        ref_dir = report.reference_set.directory
        plot_spectra(
            {name: report.spectral.images},
            report.spectral.reference,
            reference_label=f"reference set {ref_dir.name or ref_dir}",
            band=report.spectral.band,
            figure=right,
        )
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
    fig.suptitle(name)
    return save_figure(fig, path)

