"""``stftblur compare``: several folders of images side by side, one table and one figure."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

import click

from stftblur.errors import require_extra
from stftblur.metrics import METRICS
from stftblur_cli._common import CliError, command, library_errors, resolve_device
from stftblur_cli.eval_cmd import (
    _check_folders,
    _check_outputs,
    _echo_problems,
    _evaluate,
    _exit_for_bad,
    _fmt,
    _inventory,
    _metric_names,
    _reference_set,
    _reference_set_options,
    _run_options,
    _table,
    _write_outputs,
)


@command("compare")
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--reference", "reference_dir", type=click.Path(path_type=Path), help="Folder of reference images, paired with each folder's images by relative path: adds PSNR and SSIM.")
@_reference_set_options
@click.option("--metrics", default=None, metavar="LIST", help=f"Comma-separated subset of {','.join(METRICS)}. [default: lpc_si, plus psnr,ssim with --reference]")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the table and every folder's full report as JSON.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Write one CSV row per folder.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), metavar="FILE.png", help="Draw every folder's spectrum and its ratio to the reference set's (needs --reference-set).")
@_run_options
@library_errors
def compare_command(
    folders: Tuple[Path, ...],
    reference_dir: Optional[Path],
    reference_set_dir: Optional[Path],
    band: Tuple[float, float],
    metrics: Optional[str],
    json_path: Optional[Path],
    csv_path: Optional[Path],
    plot_path: Optional[Path],
    device: str,
    batch_size: int,
    skip_bad: bool,
    force: bool,
) -> None:
    """Compare folders of images: one row each with the image count, the mean of each metric
    (LPC-SI; PSNR/SSIM against --reference) and the spectral deficit against --reference-set.

    Each folder is evaluated as `stftblur eval` evaluates --images, with the same reference
    folder and reference set (whose spectrum is computed once). --plot draws all the folders'
    spectra against the reference set's in one figure.

    \b
    Examples:
      stftblur compare runs/l2/samples runs/ours/samples --reference-set data/real
      stftblur compare out/a/recon out/b/recon --reference out/a/reference --csv table.csv
    """
    from stftblur.evaluation import Comparison, plot_comparison, write_comparison_csv, write_json

    seen: Dict[Path, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            raise CliError(f"folder {folder}: no such directory")
        resolved = folder.resolve()
        if resolved in seen:
            raise CliError(f"{folder} is given twice (as {seen[resolved]} too); name each folder once")
        seen[resolved] = folder
    _check_folders({"--reference": reference_dir, "--reference-set": reference_set_dir})
    if plot_path is not None and reference_set_dir is None:
        raise CliError("--plot draws the folders' spectra against the reference set: give --reference-set too")
    _check_outputs({"--json": json_path, "--csv": csv_path, "--plot": plot_path}, force)
    if plot_path is not None:
        require_extra("matplotlib", "plot", "--plot")
    metric_names = _metric_names(metrics, reference_dir is not None)
    device = resolve_device(device)

    # A folder without pairs (prior samples beside reconstructions) just gets no PSNR/SSIM.
    inventories = [_inventory(folder, reference_dir, option="folder", need_pairs=False) for folder in folders]
    if reference_dir is not None and not any(inv.pairs for inv in inventories):
        raise CliError(
            f"no image of {', '.join(map(str, folders))} has a counterpart in --reference {reference_dir} "
            f"({len(inventories[0].references)} images)"
        )
    reference_set = _reference_set(reference_set_dir, band, device, batch_size)
    comparison = Comparison(_evaluate(inventories, metric_names, device, batch_size, reference_set), reference_set)

    columns = comparison.columns()
    rows = [[str(row[c]) if c in ("folder", "images", "pairs") else _fmt(row[c]) for c in columns]
            for row in comparison.rows()]
    for line in _table(columns, rows):
        click.echo(line)
    if reference_set is not None:
        click.echo(
            f"spectral_deficit_db: high-frequency power ({reference_set.band[0]:g}-{reference_set.band[1]:g} "
            f"cycles/pixel) of the reference set {reference_set.directory} ({len(reference_set.images)} images) "
            "over each folder's, in dB (positive: blurrier than the set)"
        )
    for report in comparison.reports:
        _echo_problems(report, prefix=f"{report.images_dir}: ")
    for line in comparison.bad:
        click.echo(line, err=True)
    written = _write_outputs(
        [(json_path, write_json), (csv_path, write_comparison_csv), (plot_path, plot_comparison)], comparison
    )
    _exit_for_bad(comparison.bad, written, skip_bad)
