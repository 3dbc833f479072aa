"""Atomic file writes: a reader never sees a half-written file, even after SIGKILL."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    The rename (:func:`os.replace`) is atomic on POSIX file systems, so ``path`` holds either
    its old content or the complete new one. The temporary file is removed if ``write`` fails.

    Args:
        path: the destination.
        write: a function that writes the whole file at the path it is given.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> p = atomic_write(d / "a.txt", lambda tmp: tmp.write_text("hello"))
        >>> p.read_text()
        'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (see :func:`atomic_write`).

    Examples:
        >>> import tempfile, pathlib, json
        >>> p = atomic_write_json(pathlib.Path(tempfile.mkdtemp()) / "c.json", {"a": 1})
        >>> json.loads(p.read_text())
        {'a': 1}
    """
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))
