"""Deprecated: the folder evaluation moved to :mod:`stftblur.evaluation`, image files to
:mod:`stftblur.io`, the metric names to :data:`stftblur.metrics.METRICS`.

Every name of this module still works for one release, with a :class:`DeprecationWarning`.
"""

from stftblur._deprecated import moved

__all__: list = []

_EVALUATION = (
    "EvalReport", "ImageResult", "Inventory", "check_metrics", "default_metrics", "evaluate_folder",
    "evaluate_inventory", "metric_settings", "pair_images", "plot_report", "summarize", "take_inventory",
    "write_csv", "write_json",
)
_IO = ("IMAGE_EXTENSIONS", "ImageInfo", "ImageReadError", "find_images", "probe_image", "read_image")


def _names(needs_reference):  # type: ignore[no-untyped-def]
    from stftblur.metrics._registry import metric_names

    return lambda: metric_names(needs_reference)


def _constant(name: str):  # type: ignore[no-untyped-def]
    from stftblur.metrics import _registry

    return lambda: getattr(_registry, name)


_REPLACED = {
    "NO_REFERENCE_METRICS": ("stftblur.metrics.METRICS (needs_reference=False)", _names(False)),
    "REFERENCE_METRICS": ("stftblur.metrics.METRICS (needs_reference=True)", _names(True)),
    "METRICS": ("stftblur.metrics.METRICS", _names(None)),
    "SSIM_WINDOW": ("stftblur.metrics.get_metric('ssim').settings", _constant("SSIM_WINDOW")),
    "SSIM_SIGMA": ("stftblur.metrics.get_metric('ssim').settings", _constant("SSIM_SIGMA")),
    "BLUR_EFFECT_H_SIZE": ("stftblur.metrics.get_metric('blur_effect').settings", _constant("BLUR_EFFECT_H_SIZE")),
}

__getattr__ = moved(
    "stftblur.evaluate",
    {
        **{n: "stftblur.evaluation" for n in _EVALUATION},
        **{n: "stftblur.io" for n in _IO},
    },
    _REPLACED,
)
