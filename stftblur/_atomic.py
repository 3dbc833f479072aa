"""Atomic file writes (private): a reader never sees a half-written file, even after SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence, Union

__all__ = ["PathLike", "atomic_write", "atomic_write_json", "replace_outputs"]

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


def replace_outputs(directory: PathLike, owned: Sequence[str]) -> None:
    """Delete a previous output of one of our commands from ``directory``, and nothing else.

    ``owned`` names the files and subdirectories the command writes; hidden entries (such as
    leftover temporary files of :func:`atomic_write`) are removed too. Any other entry means the
    directory holds something else: :class:`FileExistsError` naming it, and nothing is deleted.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "grid.png").write_bytes(b"")
        >>> replace_outputs(d, ["grid.png", "images"])
        >>> list(d.iterdir())
        []
    """
    directory = Path(directory)
    entries = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    foreign = [e for e in entries if e not in owned and not e.startswith(".")]
    if foreign:
        raise FileExistsError(f"{directory} holds files that are not this command's outputs ({', '.join(foreign[:5])})")
    for name in entries:
        p = directory / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
