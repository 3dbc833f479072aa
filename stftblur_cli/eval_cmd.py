"""``stftblur eval``: sharpness (LPC-SI), fidelity (PSNR/SSIM) and spectral deficit of a folder of images.

The helpers below (option checks, inventory, reference set, problems, exit code) are shared with
``stftblur compare`` (compare_cmd.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import click

if TYPE_CHECKING:  # pragma: no cover
    from stftblur.evaluation import EvalReport, Inventory, ReferenceSet

from stftblur.errors import require_extra
from stftblur.metrics import METRICS
from stftblur_cli._common import CliError, command, library_errors, resolve_device

_NUMBER_WIDTH = 10


def _fmt(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> List[str]:
    """Plain aligned columns: the columns in ``left`` left-aligned, the others (numbers) right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _check_outputs(outputs: Dict[str, Optional[Path]], force: bool) -> None:
    seen: Dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        resolved = path.resolve()
        if resolved in seen:
            raise CliError(f"{option} and {seen[resolved]} name the same file {path}")
        seen[resolved] = option
        if path.is_dir():
            raise CliError(f"{option} {path} is a directory, expected a file name")
        if path.exists() and not force:
            raise CliError(f"{option} {path} already exists; pass --force to overwrite it")


def _check_folders(folders: Dict[str, Optional[Path]]) -> None:
    for option, folder in folders.items():
        if folder is not None and not folder.is_dir():
            raise CliError(f"{option} {folder}: no such directory")


def _metric_names(metrics: Optional[str], with_reference: bool) -> Tuple[str, ...]:
    from stftblur.evaluation import check_metrics, default_metrics

    try:
        return check_metrics(metrics.split(","), with_reference) if metrics is not None else default_metrics(with_reference)
    except ValueError as e:
        raise CliError(f"--metrics: {e}") from None


def _inventory(images_dir: Path, reference_dir: Optional[Path], option: str = "--images", need_pairs: bool = True) -> "Inventory":
    """The files of one folder (and their pairs), or a one-line error when there is nothing to
    evaluate (no image; with ``need_pairs``, no image paired with the reference folder)."""
    from stftblur.evaluation import take_inventory

    inv = take_inventory(images_dir, reference_dir)
    if not inv.images:
        raise CliError(f"{option} {images_dir}: no images found ({len(inv.ignored)} other files ignored)")
    if reference_dir is not None and need_pairs and not inv.pairs:
        raise _no_pairs(images_dir, inv, reference_dir)
    return inv


def _no_pairs(images_dir: Path, inv: "Inventory", reference_dir: Path) -> CliError:
    return CliError(
        f"no image of {images_dir} ({len(inv.images)} images) has a counterpart in --reference "
        f"{reference_dir} ({len(inv.references)} images)"
    )


def _reference_set(folder: Optional[Path], band: Tuple[float, float], device: str, batch_size: int) -> Optional["ReferenceSet"]:
    """The --reference-set folder's headers read (one size, else exit 2); its spectrum comes later."""
    from stftblur.evaluation import ReferenceSet
    from stftblur.errors import StftblurError

    if folder is None:
        return None
    try:
        return ReferenceSet(folder, band=band, device=device, batch_size=batch_size)
    except StftblurError:
        raise
    except ValueError as e:
        raise CliError(f"--band: {e}") from None


def _evaluate(inventories: Sequence["Inventory"], metric_names: Sequence[str], device: str, batch_size: int,
              reference_set: Optional["ReferenceSet"]) -> List["EvalReport"]:
    """Evaluate each inventory with one progress bar (on stderr, when it is a terminal)."""
    import tqdm

    from stftblur.evaluation import evaluate_inventory

    total = sum(len(inv.images) for inv in inventories)
    with tqdm.tqdm(total=total, unit="img", file=sys.stderr, disable=None, leave=False, desc="eval") as bar:
        return [
            evaluate_inventory(inv, metric_names, device=device, batch_size=batch_size, progress=bar.update,
                               reference_set=reference_set)
            for inv in inventories
        ]


def _echo_problems(report: "EvalReport", prefix: str = "") -> None:
    for p in report.unpaired_images:
        click.echo(f"{prefix}unpaired image (no reference): {p}", err=True)
    for p in report.unpaired_references:
        click.echo(f"{prefix}unpaired reference (no image): {p}", err=True)


def _write_outputs(outputs: Sequence[Tuple[Optional[Path], Callable[[Any, Path], Path]]], what: Any) -> List[str]:
    written = [str(write(what, path)) for path, write in outputs if path is not None]
    if written:
        click.echo("wrote " + ", ".join(written))
    return written


def _exit_for_bad(bad: Sequence[str], written: Sequence[str], skip_bad: bool) -> None:
    if bad and not skip_bad:
        raise CliError(
            f"{len(bad)} bad file(s) or pair(s), listed above; the rest was evaluated"
            + (" and written" if written else "")
            + "; pass --skip-bad to exit 0"
        )


def _reference_set_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--reference-set and --band, the same for eval and compare."""
    f = click.option(
        "--band", nargs=2, type=float, default=(0.25, 0.5), show_default=True, metavar="LOW HIGH",
        help="Frequency band of the spectral deficit, in cycles per pixel (0 <= LOW < HIGH <= 0.5).",
    )(f)
    return click.option(
        "--reference-set", "reference_set_dir", type=click.Path(path_type=Path),
        help="Folder of real images (unpaired, any number, the images' size): adds the spectral deficit, "
             "in dB, of the images' high-frequency power against this set's (positive: blurrier).",
    )(f)


def _run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--device, --batch-size, --skip-bad and --force, the same for eval and compare."""
    for option in reversed((
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where to compute."),
        click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
                     help="Images of equal size per batch."),
        click.option("--skip-bad", is_flag=True,
                     help="Exit 0 even when files are unreadable or pairs differ in size (they are still reported)."),
        click.option("--force", is_flag=True, help="Overwrite existing --json/--csv/--plot files."),
    )):
        f = option(f)
    return f


def _echo_deficit(report: "EvalReport", indent: str = "") -> None:
    ref = report.reference_set
    if ref is None:
        return
    value = report.set_metrics()["spectral_deficit_db"]
    n_ref = report.spectral.reference.n_images if report.spectral is not None else len(ref.images)
    click.echo(
        f"{indent}spectral deficit against the reference set {ref.directory} ({n_ref} images, "
        f"band {ref.band[0]:g}-{ref.band[1]:g} cycles/pixel): {_fmt(value)} dB "
        "(positive: less high-frequency power than the reference set)"
    )


@command("eval")
@click.option("--images", "images_dir", required=True, type=click.Path(path_type=Path), help="Folder of images to evaluate (searched recursively).")
@click.option("--reference", "reference_dir", type=click.Path(path_type=Path), help="Folder of reference images, paired by relative path: adds PSNR and SSIM.")
@_reference_set_options
@click.option("--metrics", default=None, metavar="LIST", help=f"Comma-separated subset of {','.join(METRICS)}. [default: lpc_si, plus psnr,ssim with --reference]")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write per-image values, summary, set metrics and settings as JSON.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write one CSV row per image.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), metavar="FILE.png", help="Draw the per-image distribution of each metric, and with --reference-set both sets' spectra and their ratio.")
@click.option("--per-image", is_flag=True, help="Print one row per image after the summary.")
@_run_options
@library_errors
def eval_command(
    images_dir: Path,
    reference_dir: Optional[Path],
    reference_set_dir: Optional[Path],
    band: Tuple[float, float],
    metrics: Optional[str],
    json_path: Optional[Path],
    csv_path: Optional[Path],
    plot_path: Optional[Path],
    per_image: bool,
    device: str,
    batch_size: int,
    skip_bad: bool,
    force: bool,
) -> None:
    """Evaluate a folder of images: LPC-SI sharpness, PSNR/SSIM against --reference, and the
    spectral deficit against --reference-set.

    Reads PNG, JPEG, TIFF and BMP files (gray or colour, 8 or 16 bits; alpha dropped) and
    scales them to [0, 1]. Other files are ignored and counted. With --reference, an image
    pairs with the reference of the same relative path (or the same path with another
    extension). With --reference-set, nothing is paired: the mean radial power spectrum of all
    the images is compared with that of the set (same image size), and the deficit in --band
    is reported in dB (JSON: set_metrics.spectral_deficit_db). Unreadable files and pairs of
    different sizes are reported and make the exit code 2 unless --skip-bad; everything else is
    still evaluated and written.

    \b
    Examples:
      stftblur eval --images out/samples
      stftblur eval --images out/recon --reference out/reference --json eval.json --per-image
      stftblur eval --images out/samples --reference-set out/reference --json eval.json --plot eval.png
    """
    from stftblur.evaluation import plot_report, write_csv, write_json

    _check_folders({"--images": images_dir, "--reference": reference_dir, "--reference-set": reference_set_dir})
    _check_outputs({"--json": json_path, "--csv": csv_path, "--plot": plot_path}, force)
    if plot_path is not None:
        require_extra("matplotlib", "plot", "--plot")
    with_reference = reference_dir is not None
    metric_names = _metric_names(metrics, with_reference)
    device = resolve_device(device)

    inv = _inventory(images_dir, reference_dir)
    reference_set = _reference_set(reference_set_dir, band, device, batch_size)
    (report,) = _evaluate([inv], metric_names, device, batch_size, reference_set)

    evaluated = sum(1 for r in report.results if r.values)
    click.echo(
        f"{evaluated} of {len(inv.images)} images evaluated in {images_dir}"
        + (f" against {reference_dir} ({len(inv.pairs)} pairs)" if with_reference else "")
        + f"; {len(inv.ignored) + len(inv.ignored_references)} non-image files ignored"
    )
    summary = report.summary()
    rows = [
        [m, str(s["count"]), *(_fmt(s[k]) for k in ("mean", "std", "median", "min", "max"))]
        for m, s in summary.items()
    ]
    for line in _table(["metric", "count", "mean", "std", "median", "min", "max"], rows):
        click.echo(line)
    _echo_deficit(report)
    if per_image:
        click.echo("")
        image_rows = [
            [r.path, *(_fmt(r.values.get(m)) for m in report.metrics), "; ".join(r.errors + r.notes)]
            for r in report.results
        ]
        for line in _table(["image", *report.metrics, "problems"], image_rows, left=(0, len(report.metrics) + 1)):
            click.echo(line)

    _echo_problems(report)
    for line in report.bad:
        click.echo(line, err=True)
    written = _write_outputs([(json_path, write_json), (csv_path, write_csv), (plot_path, plot_report)], report)
    _exit_for_bad(report.bad, written, skip_bad)
