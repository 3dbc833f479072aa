"""Evaluate folders of restored or generated images: LPC-SI, and PSNR/SSIM against references.

The library behind ``stftblur eval``: list the images of a folder (recursively) and pair them
with a reference folder by relative path (:func:`take_inventory`), compute the registered
metrics (:data:`stftblur.metrics.METRICS`) in batches of equal-sized images
(:func:`evaluate_inventory`; :func:`compute_metrics` on tensors), summarise
(:class:`EvalReport`), and write JSON, CSV and a plot. Set-level, unpaired: the spectral
deficit of a folder against a :class:`ReferenceSet` of real images
(:func:`stftblur.metrics.spectral_deficit`); :func:`compare_folders` puts several folders side
by side. Image files are read by
:mod:`stftblur.io`. Nothing here prints: problems are recorded in the :class:`EvalReport`.
"""

from stftblur.evaluation._compare import Comparison, compare_folders, plot_comparison, write_comparison_csv
from stftblur.evaluation._engine import (
    check_metrics,
    compute_metrics,
    default_metrics,
    evaluate_folder,
    evaluate_inventory,
    metric_settings,
)
from stftblur.evaluation._inventory import Inventory, pair_images, take_inventory
from stftblur.evaluation._report import EvalReport, ImageResult, summarize
from stftblur.evaluation._sets import ImageSetError, ReferenceSet, check_set_size, spectral_summary
from stftblur.evaluation._writers import plot_report, write_csv, write_json

__all__ = [
    "EvalReport",
    "ImageResult",
    "ImageSetError",
    "Inventory",
    "ReferenceSet",
    "Comparison",
    "check_metrics",
    "check_set_size",
    "compare_folders",
    "compute_metrics",
    "default_metrics",
    "evaluate_folder",
    "evaluate_inventory",
    "metric_settings",
    "pair_images",
    "plot_comparison",
    "plot_report",
    "spectral_summary",
    "summarize",
    "take_inventory",
    "write_comparison_csv",
    "write_csv",
    "write_json",
]
