"""Image files: find, probe, read, quantise and write them.

The one home for image files in stftblur. Reading gives float32 (C, H, W) arrays in [0, 1];
writing takes raw (B, C, H, W) tensors and stores ``round(clamp(x, 0, 1) * 255)`` as 8-bit PNG
(:func:`to_uint8`, the project's only quantisation). Used by ``stftblur eval``
(:mod:`stftblur.evaluation`), the VAE exports (:mod:`stftblur.training`) and the benchmarks.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from stftblur._atomic import PathLike, atomic_write
from stftblur.errors import StftblurError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageInfo",
    "ImageReadError",
    "find_images",
    "make_grid",
    "probe_image",
    "read_image",
    "save_grid",
    "save_images",
    "save_png",
    "to_uint8",
]

#: File name endings read as images (case-insensitive); every other file is ignored and counted.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class ImageReadError(StftblurError, ValueError):
    """A file that has an image extension but cannot be read as an image.

    Convention:
        ``str(error)`` is ``"<path>: <reason>"``; ``error.path`` is the path and
        ``error.reason`` the reason alone (what the evaluation report records).

    Examples:
        >>> e = ImageReadError("a/b.png", "truncated")
        >>> str(e), e.reason
        ('a/b.png: truncated', 'truncated')
    """

    def __init__(self, path: PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def find_images(root: PathLike) -> Tuple[List[str], List[str]]:
    """The image files under ``root`` (recursively) and the other files, as sorted relative paths.

    Convention:
        A file is an image when its name ends with one of :data:`IMAGE_EXTENSIONS` (any case)
        and no part of its relative path starts with ``"."`` (hidden files and folders, such as
        ``.ipynb_checkpoints``, are listed with the ignored files). Paths are relative to
        ``root`` and use ``/``. Nothing is opened. :class:`NotADirectoryError` if ``root`` is
        not a directory.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> (d / "sub").mkdir(); _ = (d / "sub" / "a.PNG").write_bytes(b""); _ = (d / "notes.txt").write_text("")
        >>> find_images(d)
        (['sub/a.PNG'], ['notes.txt'])
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    images: List[str] = []
    ignored: List[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            hidden = any(part.startswith(".") for part in rel.split("/"))
            if not hidden and name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(rel)
            else:
                ignored.append(rel)
    return sorted(images), sorted(ignored)


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the header of an image file says: size, channels after conversion, and a note.

    Convention:
        ``channels`` is what :func:`read_image` will return: 1 for gray (with or without
        alpha), 3 for everything else. ``note`` flags a file read with reduced precision.

    Examples:
        >>> ImageInfo(height=4, width=6, channels=1)
        ImageInfo(height=4, width=6, channels=1, note=None)
    """

    height: int
    width: int
    channels: int
    note: Optional[str] = None


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def _png_header(path: Path) -> Optional[Tuple[int, int]]:
    """(bit depth, colour type) from a PNG's IHDR, or None for another format."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return head[24], head[25]


_SIXTEEN_BIT_COLOUR_NOTE = (
    "16-bit colour PNG read at 8-bit precision (Pillow cannot decode more); save as TIFF to keep 16 bits"
)


def probe_image(path: PathLike) -> ImageInfo:
    """Read only the header of an image file; :class:`ImageReadError` if it is not one.

    Convention:
        TIFFs through tifffile (first page), everything else through Pillow; no pixel is
        decoded, so a file truncated after its header passes here and fails in
        :func:`read_image`. 16-bit colour PNGs get a note (Pillow decodes them at 8 bits).

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.png"
        >>> Image.fromarray(np.zeros((5, 7, 4), np.uint8)).save(p)
        >>> probe_image(p)
        ImageInfo(height=5, width=7, channels=3, note=None)
    """
    path = Path(path)
    try:
        if _is_tiff(path):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                arr_shape = dict(zip(page.axes, page.shape))
                samples = arr_shape.get("S", 1)
                return ImageInfo(arr_shape["Y"], arr_shape["X"], 1 if samples < 3 else 3)
        from PIL import Image

        with Image.open(path) as im:
            mode, (w, h) = im.mode, im.size
        channels = 1 if mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16") else 3
        note = None
        header = _png_header(path)
        if header is not None and header[0] == 16 and header[1] in (2, 6):
            note = _SIXTEEN_BIT_COLOUR_NOTE
        return ImageInfo(h, w, channels, note)
    except Exception as e:  # Pillow and tifffile raise many kinds of errors for bad files
        raise ImageReadError(path, f"cannot read as an image ({type(e).__name__}: {e})") from None


def _scale_integer(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32)
    raise ValueError(f"unsupported pixel type {arr.dtype}")


def read_image(path: PathLike) -> np.ndarray:
    """Read an image as float32 (C, H, W) with C = 1 (gray) or 3 (RGB), scaled to [0, 1].

    Convention:
        Integers are divided by the maximum of their type (255 for 8 bits, 65535 for 16
        bits); float TIFFs are kept as they are. Alpha is dropped, palettes are expanded,
        two-channel gray+alpha gives gray, CMYK and YCbCr are converted to RGB by Pillow. TIFFs
        are read with tifffile (first page; 16-bit colour kept), everything else with Pillow
        (which reads 16-bit colour PNGs at 8-bit precision; :func:`probe_image` notes those).
        Pixels are not rotated by EXIF orientation tags. :class:`ImageReadError` for a corrupt
        or unsupported file.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> from PIL import Image
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.png"
        >>> Image.fromarray(np.array([[0, 65535]], np.uint16)).save(p)
        >>> read_image(p)
        array([[[0., 1.]]], dtype=float32)
    """
    path = Path(path)
    try:
        if _is_tiff(path):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                arr = page.asarray()
                axes = page.axes
            if "S" in axes:
                arr = np.moveaxis(arr, axes.index("S"), -1)
            arr = arr.reshape(arr.shape[0], arr.shape[1], -1) if arr.ndim >= 2 else arr
            if arr.ndim != 3:
                raise ValueError(f"unsupported TIFF layout {axes} {page.shape}")
            arr = arr[..., :1] if arr.shape[-1] < 3 else arr[..., :3]
            out = _scale_integer(arr)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                mode = im.mode
                if mode in ("1", "L", "F") or mode.startswith("I;16"):
                    out = _scale_integer(np.asarray(im))[..., None]
                elif mode == "I":  # 32-bit integer container of 16-bit samples
                    out = (np.asarray(im).astype(np.float32) / np.float32(65535.0))[..., None]
                elif mode in ("LA", "La"):
                    out = _scale_integer(np.asarray(im.getchannel(0)))[..., None]
                else:
                    if mode not in ("RGB", "RGBA", "RGBa", "RGBX"):
                        im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
                    out = _scale_integer(np.asarray(im)[..., :3])
    except Exception as e:  # Pillow and tifffile raise many kinds of errors for bad files
        raise ImageReadError(path, f"cannot read as an image ({type(e).__name__}: {e})") from None
    return np.ascontiguousarray(np.moveaxis(out, -1, 0))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Map raw outputs to 8-bit pixels: ``round(clamp(x, 0, 1) * 255)``, shape (B, H, W[, C]).

    This is how every PNG of this project is made from a decoder output. The authors' code
    passes prior samples through a sigmoid before plotting instead, although the models were
    trained and evaluated on the unsquashed output; clamping shows what was evaluated.

    Examples:
        >>> import torch
        >>> to_uint8(torch.tensor([[[[-0.5, 0.5, 1.7]]]]))
        array([[[  0, 128, 255]]], dtype=uint8)
    """
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    x = (images.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu()
    x = x.permute(0, 2, 3, 1).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.5) -> torch.Tensor:
    """Tile (B, C, H, W) images into one (C, H', W') image, ``nrow`` images per row.

    Examples:
        >>> import torch
        >>> make_grid(torch.zeros(10, 1, 28, 28), nrow=5).shape
        torch.Size([1, 62, 152])
    """
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (B, C, H, W) with B >= 1, got {tuple(images.shape)}")
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    b, c, h, w = images.shape
    ncol = min(nrow, b)
    rows = math.ceil(b / ncol)
    grid = images.new_full((c, rows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for i in range(b):
        r, q = divmod(i, ncol)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, y : y + h, x : x + w] = images[i]
    return grid


def save_png(image: torch.Tensor, path: PathLike) -> Path:
    """Save one (C, H, W) or (H, W) image of raw values as an 8-bit PNG (see :func:`to_uint8`).

    Examples:
        >>> import torch, tempfile, pathlib
        >>> p = save_png(torch.rand(1, 28, 28), pathlib.Path(tempfile.mkdtemp()) / "x.png")
        >>> p.suffix
        '.png'
    """
    from PIL import Image

    if image.dim() == 2:
        image = image[None]
    pixels = to_uint8(image[None])[0]
    path = Path(path)
    atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))
    return path


def save_grid(images: torch.Tensor, path: PathLike, nrow: int = 8) -> Path:
    """Save (B, C, H, W) raw outputs as one PNG grid (clamped, see :func:`to_uint8`).

    Examples:
        >>> import torch, tempfile, pathlib
        >>> save_grid(torch.rand(4, 1, 28, 28), pathlib.Path(tempfile.mkdtemp()) / "g.png").name
        'g.png'
    """
    return save_png(make_grid(images, nrow), path)


def save_images(
    images: torch.Tensor, directory: PathLike, names: Optional[Sequence[str]] = None, prefix: str = "img"
) -> list:
    """Save every image of a (B, C, H, W) batch as its own PNG in ``directory``.

    File names are ``names`` (``.png`` appended when missing) or ``{prefix}-{i:05d}.png``.

    Returns:
        The written paths.

    Examples:
        >>> import torch, tempfile
        >>> [p.name for p in save_images(torch.rand(2, 1, 8, 8), tempfile.mkdtemp(), prefix="s")]
        ['s-00000.png', 's-00001.png']
    """
    from PIL import Image

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if names is not None and len(names) != images.shape[0]:
        raise ValueError(f"names has {len(names)} entries for {images.shape[0]} images")
    pixels = to_uint8(images)
    paths = []
    for i, arr in enumerate(pixels):
        name = names[i] if names is not None else f"{prefix}-{i:05d}"
        path = directory / (name if name.endswith(".png") else name + ".png")
        Image.fromarray(arr).save(path, format="PNG")
        paths.append(path)
    return paths
