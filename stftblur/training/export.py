"""Deprecated: writing images moved to :mod:`stftblur.io` (same names); they still work here
for one release, with a :class:`DeprecationWarning`."""

from stftblur._deprecated import moved

__all__: list = []

__getattr__ = moved(
    "stftblur.training.export",
    {n: "stftblur.io" for n in ("make_grid", "save_grid", "save_images", "save_png", "to_uint8")},
)
