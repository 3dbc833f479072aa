"""MNIST and Fashion-MNIST as in-memory tensors, found on disk or downloaded once.

Where the files are looked for, in order (see ``docs/vae.md``):

1. ``data_dir`` when given (``--data-dir``); it is then the only place looked at.
2. ``$STFTBLUR_DATA``: the dataset's own subdirectory (``$STFTBLUR_DATA/mnist``,
   ``$STFTBLUR_DATA/fashion-mnist``), or the directory itself unless its name is that of
   another dataset (so ``STFTBLUR_DATA=.../mnist`` is never read as Fashion-MNIST).
3. The user cache, ``$XDG_CACHE_HOME/stftblur/<dataset>`` (``~/.cache/stftblur/<dataset>``).
4. ``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST (Debian's ``dataset-fashion-mnist``).
5. A download into the user cache with torchvision (the ``vision`` extra), when ``download=True``.

In each directory the four IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``) may lie
directly, under ``raw/``, or under torchvision's ``MNIST/raw/`` / ``FashionMNIST/raw/``.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from stftblur._checks import check_choice
from stftblur._atomic import PathLike
from stftblur.errors import StftblurError, require_extra
from stftblur.data.idx import IDXFormatError, read_idx

__all__ = ["DATASETS", "DatasetNotFoundError", "ImageSet", "SPLITS", "dataset_files", "find_dataset", "load_dataset", "user_cache_dir"]

DATASETS = ("mnist", "fashion-mnist")
SPLITS = ("train", "test")
_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_ALIASES = {
    "mnist": ("mnist", "MNIST"),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "fashionmnist", "FashionMNIST"),
}
_SYSTEM_DIRS = {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),)}
_SIZES = {"train": 60000, "test": 10000}


class DatasetNotFoundError(StftblurError, FileNotFoundError):
    """No location holds the dataset's files; the message lists every place tried and how to fix it.

    A subclass of :class:`FileNotFoundError`.

    Examples:
        >>> issubclass(DatasetNotFoundError, FileNotFoundError)
        True
    """


@dataclass(frozen=True)
class ImageSet:
    """A split of an image dataset held in memory.

    Attributes:
        images: float32 tensor (N, 1, 28, 28): binary {0, 1} or grayscale in [0, 1].
        labels: int64 tensor (N,).
        name: the dataset name.
        split: ``"train"`` or ``"test"``.
        source: the directory the files were read from.

    Examples:
        >>> import torch
        >>> s = ImageSet(torch.zeros(3, 1, 28, 28), torch.zeros(3, dtype=torch.long), "mnist", "test", None)
        >>> len(s), s[:2].images.shape
        (3, torch.Size([2, 1, 28, 28]))
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    split: str
    source: Optional[Path]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: Union[int, slice, torch.Tensor]) -> "ImageSet":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return ImageSet(self.images[index], self.labels[index], self.name, self.split, self.source)

    def to(self, device: Union[str, torch.device]) -> "ImageSet":
        """The same set with its tensors on ``device``."""
        return ImageSet(self.images.to(device), self.labels.to(device), self.name, self.split, self.source)


def user_cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/stftblur/<name>``, or ``~/.cache/stftblur/<name>``.

    Examples:
        >>> user_cache_dir("mnist").name
        'mnist'
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "stftblur" / name


def _find_file(directory: Path, stem: str) -> Optional[Path]:
    for name in (stem, stem + ".gz"):
        p = directory / name
        if p.is_file():
            return p
    return None


def dataset_files(directory: PathLike, name: str = "mnist") -> Optional[Dict[Tuple[str, str], Path]]:
    """The four IDX files of ``name`` in ``directory`` (or its ``raw/`` layouts), or None.

    Examples:
        >>> import tempfile
        >>> dataset_files(tempfile.mkdtemp()) is None
        True
    """
    check_choice(name, "dataset", DATASETS)
    base = Path(directory)
    for d in (base, base / "raw", base / _TORCHVISION[name] / "raw"):
        found = {key: _find_file(d, stem) for key, stem in _FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def _describe_missing(directory: Path) -> str:
    if not directory.exists():
        return "does not exist"
    if not directory.is_dir():
        return "is not a directory"
    missing = [stem + "[.gz]" for stem in _FILES.values() if _find_file(directory, stem) is None]
    return "lacks " + ", ".join(missing)


def _env_candidates(name: str, root: Path) -> List[Path]:
    out = [root / alias for alias in _ALIASES[name]]
    other_names = {a for other, aliases in _ALIASES.items() if other != name for a in aliases}
    if root.name not in other_names:
        out.append(root)
    return out


def _download(name: str, target: Path, timeout: float) -> None:
    tvd = require_extra("torchvision.datasets", "vision", "a download")
    cls = getattr(tvd, _TORCHVISION[name])
    created = not target.exists()
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        target.mkdir(parents=True, exist_ok=True)
        cls(root=str(target), train=True, download=True)
        cls(root=str(target), train=False, download=True)
    except BaseException:
        if created:  # leave no empty or partial cache behind
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        socket.setdefaulttimeout(old)


def find_dataset(
    name: str = "mnist",
    data_dir: Optional[PathLike] = None,
    download: bool = True,
    timeout: float = 30.0,
) -> Dict[Tuple[str, str], Path]:
    """Locate (or download) the four IDX files of ``name``; see the module docstring for the order.

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"``.
        data_dir: an explicit directory; when given, it is the only place looked at.
        download: try a torchvision download into the user cache as the last resort.
        timeout: socket timeout of the download, in seconds.

    Returns:
        ``{(split, "images"|"labels"): path}``.

    Raises:
        DatasetNotFoundError: one message listing every location tried and how to fix it.

    Examples:
        >>> import tempfile
        >>> try:
        ...     find_dataset("mnist", data_dir=tempfile.mkdtemp(), download=False)
        ... except DatasetNotFoundError as e:
        ...     print(str(e)[:27])
        MNIST files not found: data
    """
    check_choice(name, "dataset", DATASETS)
    pretty = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}[name]
    tried: List[str] = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        found = dataset_files(d, name)
        if found:
            return found
        raise DatasetNotFoundError(
            f"{pretty} files not found: data directory {d} {_describe_missing(d)}; point it at a directory "
            f"holding {', '.join(_FILES.values())} (each optionally .gz), or leave it out to use "
            f"$STFTBLUR_DATA, the user cache or a download"
        )
    candidates: List[Tuple[str, Path]] = []
    env = os.environ.get("STFTBLUR_DATA")
    if env:
        candidates += [("$STFTBLUR_DATA", p) for p in _env_candidates(name, Path(env).expanduser())]
    else:
        tried.append("  $STFTBLUR_DATA: not set")
    cache = user_cache_dir(name)
    candidates.append(("user cache", cache))
    candidates += [("system", p) for p in _SYSTEM_DIRS.get(name, ())]
    for label, d in candidates:
        found = dataset_files(d, name)
        if found:
            return found
        tried.append(f"  {label} {d}: {_describe_missing(d)}")
    if download:
        try:
            _download(name, cache, timeout)
            found = dataset_files(cache, name)
            if found:
                return found
            tried.append(f"  download into {cache}: finished but the files are not there")
        except Exception as e:  # offline, mirror down, no torchvision...
            reason = " ".join(str(e).split()) or type(e).__name__
            tried.append(f"  download into {cache}: failed ({reason})")
    else:
        tried.append("  download: disabled")
    hint = (
        "Fix: pass --data-dir DIR (data_dir=...) or set STFTBLUR_DATA to a directory holding "
        f"{', '.join(_FILES.values())} (each optionally .gz), or copy them to {cache}, or go online "
        "once so that torchvision (pip install 'stftblur[vision]') can download them."
    )
    if name == "fashion-mnist":
        hint += " On Debian: apt-get install dataset-fashion-mnist."
    raise DatasetNotFoundError(f"{pretty} files not found; tried:\n" + "\n".join(tried) + "\n" + hint)


@functools.lru_cache(maxsize=8)
def _read_split(images: Path, labels: Path, mtimes: Tuple[float, float]) -> Tuple[np.ndarray, np.ndarray]:
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise IDXFormatError(f"{images}: expected uint8 images of shape (N, H, W), got {x.dtype} {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise IDXFormatError(f"{labels}: expected {x.shape[0]} labels (one per image in {images.name}), got shape {y.shape}")
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load_dataset(
    name: str = "mnist",
    split: str = "train",
    data_dir: Optional[PathLike] = None,
    binarize: bool = True,
    download: bool = True,
    device: Union[str, torch.device] = "cpu",
) -> ImageSet:
    """Load a split of MNIST or Fashion-MNIST into memory as float32 tensors.

    Convention:
        ``binarize=True`` is the paper's input: ``x / 255 > 0.5`` as 0.0 / 1.0 (a fixed
        threshold, not stochastic binarization). ``binarize=False`` gives grayscale
        ``x / 255``. Images have shape (N, 1, 28, 28); the parsed files are cached per process.

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"``.
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        data_dir: explicit directory holding the IDX files (see :func:`find_dataset`).
        binarize: threshold at 0.5 as the paper does.
        download: allow a torchvision download as the last resort.
        device: where the tensors go.

    Examples:
        >>> import tempfile
        >>> try:
        ...     load_dataset("mnist", data_dir=tempfile.mkdtemp())
        ... except DatasetNotFoundError:
        ...     print("not found")
        not found
    """
    check_choice(name, "dataset", DATASETS)
    check_choice(split, "split", SPLITS)
    files = find_dataset(name, data_dir, download)
    images, labels = files[(split, "images")], files[(split, "labels")]
    x, y = _read_split(images, labels, (images.stat().st_mtime, labels.stat().st_mtime))
    t = torch.from_numpy(x.copy()).unsqueeze(1)
    t = (t.float() / 255.0 > 0.5).float() if binarize else t.float() / 255.0
    return ImageSet(t.to(device), torch.from_numpy(y.astype(np.int64)).to(device), name, split, images.parent)
