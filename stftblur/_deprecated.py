"""Moved public names: a module ``__getattr__`` that finds them at their new home and warns."""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, Mapping, Optional, Tuple

__all__ = ["moved"]


def _warn(message: str) -> None:
    warnings.warn(message, DeprecationWarning, stacklevel=3)


def moved(
    old_module: str,
    names: Mapping[str, str],
    replaced: Optional[Mapping[str, Tuple[str, Callable[[], Any]]]] = None,
) -> Callable[[str], Any]:
    """``__getattr__`` for ``old_module``: ``names`` maps each moved name to its new module;
    ``replaced`` maps names that have no direct successor to (what to use instead, a function
    computing the old value).

    The name keeps working for one release, with a :class:`DeprecationWarning` naming the new
    import.
    """
    replaced = replaced or {}

    def __getattr__(name: str) -> Any:
        if name in replaced:
            instead, value = replaced[name]
            _warn(f"{old_module}.{name} is deprecated; use {instead}")
            return value()
        new = names.get(name)
        if new is None:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        _warn(f"{old_module}.{name} moved to {new}.{name}; the old name will be removed in the next release")
        return getattr(importlib.import_module(new), name)

    return __getattr__
