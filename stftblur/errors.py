"""The base of every error stftblur raises for bad input (:class:`StftblurError`), and the error
of a feature whose optional dependency is not installed (:class:`MissingExtraError`).

Each concrete error also derives from the built-in exception that describes it
(:class:`ValueError`, :class:`FileNotFoundError`, :class:`ImportError`), so ``except ValueError``
keeps working; ``except StftblurError`` catches every error of the library, which is what the
``stftblur`` command turns into a one-line message with exit code 2.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["StftblurError", "MissingExtraError", "require_extra"]

# Import name -> the name pip installs it under, where the two differ.
_PIP_NAMES = {"skimage": "scikit-image", "PIL": "pillow", "yaml": "pyyaml"}


class StftblurError(Exception):
    """Base class of the library's input errors: bad files, folders, data or checkpoints.

    Convention:
        ``str(error)`` is a complete one-line message naming what was wrong and what was
        expected. Argument errors of the functions (bad shape, bad option) stay plain
        :class:`TypeError`/:class:`ValueError`, as in PyTorch.

    Examples:
        >>> from stftblur.data import DatasetNotFoundError
        >>> issubclass(DatasetNotFoundError, StftblurError)
        True
    """


class MissingExtraError(StftblurError, ImportError):
    """A feature needs a package that the core install leaves out; the message names the extra.

    Convention:
        The core install (``pip install stftblur``) holds torch, numpy and small single-purpose
        packages. Figures need ``stftblur[plot]`` (matplotlib), :func:`stftblur.metrics.blur_effect`
        ``stftblur[skimage]``, dataset downloads ``stftblur[vision]`` (torchvision). The message
        is one line: ``"<feature> needs <package>: pip install 'stftblur[<extra>]'"``;
        ``extra`` holds the extra's name. An :class:`ImportError` too.

    Examples:
        >>> e = MissingExtraError("figures", "matplotlib", "plot")
        >>> str(e), e.extra, isinstance(e, ImportError)
        ("figures needs matplotlib: pip install 'stftblur[plot]'", 'plot', True)
    """

    def __init__(self, feature: str, package: str, extra: str) -> None:
        super().__init__(f"{feature} needs {package}: pip install 'stftblur[{extra}]'")
        self.feature = feature
        self.package = package
        self.extra = extra


def require_extra(module: str, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise :class:`MissingExtraError` naming ``extra``.

    Only a missing package is turned into the one-line error; a package that is installed but
    fails while importing keeps its own error.

    Examples:
        >>> require_extra("json", "plot", "a figure").__name__
        'json'
        >>> require_extra("no_such_module.sub", "plot", "a figure")
        Traceback (most recent call last):
        ...
        stftblur.errors.MissingExtraError: a figure needs no_such_module: pip install 'stftblur[plot]'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is not None and e.name != module and not module.startswith(e.name + "."):
            raise  # the package is there, one of its own dependencies is not
        top = module.split(".")[0]
        raise MissingExtraError(feature, _PIP_NAMES.get(top, top), extra) from None
