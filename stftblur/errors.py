"""The base of every error stftblur raises for bad input: :class:`StftblurError`.

Each concrete error also derives from the built-in exception that describes it
(:class:`ValueError`, :class:`FileNotFoundError`), so ``except ValueError`` keeps working;
``except StftblurError`` catches every error of the library, which is what the ``stftblur``
command turns into a one-line message with exit code 2.
"""

from __future__ import annotations

__all__ = ["StftblurError"]


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
