"""Evaluate folders of restored or generated images: LPC-SI, and PSNR/SSIM against references.

The library behind ``stftblur eval``: list the images of a folder (recursively) and pair them
with a reference folder by relative path (:func:`take_inventory`), compute the registered
metrics (:data:`stftblur.metrics.METRICS`) in batches of equal-sized images
(:func:`evaluate_inventory`; :func:`compute_metrics` on tensors), summarise
(:class:`EvalReport`), and write JSON, CSV and a plot. Image files are read by
:mod:`stftblur.io`. Nothing here prints: problems are recorded in the :class:`EvalReport`.
"""

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
from stftblur.evaluation._writers import plot_report, write_csv, write_json

__all__ = [
    "EvalReport",
    "ImageResult",
    "Inventory",
    "check_metrics",
    "compute_metrics",
    "default_metrics",
    "evaluate_folder",
    "evaluate_inventory",
    "metric_settings",
    "pair_images",
    "plot_report",
    "summarize",
    "take_inventory",
    "write_csv",
    "write_json",
]
