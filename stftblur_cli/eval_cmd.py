"""``stftblur eval``: sharpness (LPC-SI) and fidelity (PSNR/SSIM) of a folder of images."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import click

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


@command("eval")
@click.option("--images", "images_dir", required=True, type=click.Path(path_type=Path), help="Folder of images to evaluate (searched recursively).")
@click.option("--reference", "reference_dir", type=click.Path(path_type=Path), help="Folder of reference images, paired by relative path: adds PSNR and SSIM.")
@click.option("--metrics", default=None, metavar="LIST", help=f"Comma-separated subset of {','.join(METRICS)}. [default: lpc_si, plus psnr,ssim with --reference]")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write per-image values, summary and settings as JSON.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write one CSV row per image.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), metavar="FILE.png", help="Draw the per-image distribution of each metric.")
@click.option("--per-image", is_flag=True, help="Print one row per image after the summary.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True, help="Where to compute.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Images of equal size per batch.")
@click.option("--skip-bad", is_flag=True, help="Exit 0 even when files are unreadable or pairs differ in size (they are still reported).")
@click.option("--force", is_flag=True, help="Overwrite existing --json/--csv/--plot files.")
@library_errors
def eval_command(
    images_dir: Path,
    reference_dir: Optional[Path],
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
    """Evaluate a folder of images: LPC-SI sharpness, and PSNR/SSIM against --reference.

    Reads PNG, JPEG, TIFF and BMP files (gray or colour, 8 or 16 bits; alpha dropped) and
    scales them to [0, 1]. Other files are ignored and counted. With --reference, an image
    pairs with the reference of the same relative path (or the same path with another
    extension). Unreadable files and pairs of different sizes are reported and make the exit
    code 2 unless --skip-bad; everything else is still evaluated and written.

    \b
    Examples:
      stftblur eval --images out/samples
      stftblur eval --images out/recon --reference out/reference --json eval.json --per-image
    """
    import tqdm

    from stftblur.evaluation import (
        check_metrics,
        default_metrics,
        evaluate_inventory,
        plot_report,
        take_inventory,
        write_csv,
        write_json,
    )

    for option, folder in (("--images", images_dir), ("--reference", reference_dir)):
        if folder is not None and not folder.is_dir():
            raise CliError(f"{option} {folder}: no such directory")
    _check_outputs({"--json": json_path, "--csv": csv_path, "--plot": plot_path}, force)
    with_reference = reference_dir is not None
    try:
        metric_names = check_metrics(metrics.split(","), with_reference) if metrics is not None else default_metrics(with_reference)
    except ValueError as e:
        raise CliError(f"--metrics: {e}") from None
    device = resolve_device(device)

    inv = take_inventory(images_dir, reference_dir)
    if not inv.images:
        raise CliError(f"--images {images_dir}: no images found ({len(inv.ignored)} other files ignored)")
    if with_reference and not inv.pairs:
        raise CliError(
            f"no image of {images_dir} ({len(inv.images)} images) has a counterpart in --reference "
            f"{reference_dir} ({len(inv.references)} images)"
        )
    with tqdm.tqdm(total=len(inv.images), unit="img", file=sys.stderr, disable=None, leave=False, desc="eval") as bar:
        report = evaluate_inventory(inv, metric_names, device=device, batch_size=batch_size, progress=bar.update)

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
    if per_image:
        click.echo("")
        image_rows = [
            [r.path, *(_fmt(r.values.get(m)) for m in report.metrics), "; ".join(r.errors + r.notes)]
            for r in report.results
        ]
        for line in _table(["image", *report.metrics, "problems"], image_rows, left=(0, len(report.metrics) + 1)):
            click.echo(line)

    for p in report.unpaired_images:
        click.echo(f"unpaired image (no reference): {p}", err=True)
    for p in report.unpaired_references:
        click.echo(f"unpaired reference (no image): {p}", err=True)
    for line in report.bad:
        click.echo(line, err=True)

    written = []
    if json_path is not None:
        written.append(str(write_json(report, json_path)))
    if csv_path is not None:
        written.append(str(write_csv(report, csv_path)))
    if plot_path is not None:
        written.append(str(plot_report(report, plot_path)))
    if written:
        click.echo("wrote " + ", ".join(written))
    if report.bad and not skip_bad:
        raise CliError(
            f"{len(report.bad)} bad file(s) or pair(s), listed above; the rest was evaluated"
            + (" and written" if written else "")
            + "; pass --skip-bad to exit 0"
        )
