"""Reading the IDX format of MNIST and Fashion-MNIST (plain or gzip-compressed)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from stftblur._atomic import PathLike
from stftblur.errors import StftblurError

__all__ = ["IDXFormatError", "parse_idx", "read_idx"]

# Third byte of the magic number -> element type (big-endian where it matters).
_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IDXFormatError(StftblurError, ValueError):
    """An IDX file that cannot be parsed (bad magic number, truncated, wrong length).

    Examples:
        >>> try:
        ...     parse_idx(bytes([0x1F, 0x8B, 8, 0]), "x.gz")
        ... except IDXFormatError as e:
        ...     print(str(e)[:31])
        x.gz: bad IDX magic number 1f8b
    """


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (OSError, EOFError) as e:  # truncated or corrupt gzip stream
            raise IDXFormatError(f"{path}: corrupt gzip data ({e})") from e
    return path.read_bytes()


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an IDX file into an array.

    Convention:
        The IDX header is two zero bytes, a type byte (0x08 = uint8, ..., 0x0E = float64),
        the number of dimensions, then one big-endian uint32 per dimension; the data follow in
        C order. Anything else is an :class:`IDXFormatError` that names the file.

    Args:
        data: the file's (decompressed) bytes.
        name: the file name used in error messages.

    Returns:
        The array, in native byte order.

    Examples:
        >>> import numpy as np
        >>> raw = bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
        >>> parse_idx(raw)
        array([[0, 1, 2],
               [3, 4, 5]], dtype=uint8)
    """
    if len(data) < 4:
        raise IDXFormatError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise IDXFormatError(
            f"{name}: bad IDX magic number {data[:4].hex()} (expected 0000 followed by a type byte "
            f"in {sorted(hex(t) for t in _DTYPES)} and the number of dimensions); is this an MNIST IDX file?"
        )
    dtype = _DTYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{name}: truncated IDX header ({len(data)} bytes, {ndim} dimensions need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise IDXFormatError(
            f"{name}: {what}: the header announces shape {shape} ({expected} bytes) but the file has {len(data)}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not (detected from the content, not the name).

    Examples:
        >>> import tempfile, pathlib, gzip
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x-idx1-ubyte.gz"
        >>> p.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])))
        31
        >>> read_idx(p)
        array([7, 8, 9], dtype=uint8)
    """
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))
