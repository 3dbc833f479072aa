"""Shared by the tests/test_vae_*.py files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Dict, Iterator

import numpy as np
import pytest
import torch

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (the MNIST format: magic 0 0 8 ndim, big-endian sizes, uint8 data) written by hand."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_dataset(directory: Path, n_train: int = 6, n_test: int = 4, gz: bool = False,
                      seed: int = 0) -> Dict[str, np.ndarray]:
    """Random uint8 images and labels as the four MNIST IDX files in ``directory``; returns the
    arrays written, by file stem."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        STEMS[0]: rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8),
        STEMS[1]: rng.integers(0, 10, (n_train,)).astype(np.uint8),
        STEMS[2]: rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8),
        STEMS[3]: rng.integers(0, 10, (n_test,)).astype(np.uint8),
    }
    for stem, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (directory / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)
    return arrays


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run on one CPU thread: with two threads, a busy neighbour process on a 2-core machine makes
    every small parallel region wait for a time slice (several times slower), and one thread also makes
    float results independent of the machine's core count."""
    from stftblur_cli._process import tune_allocator

    tune_allocator()  # spares each training step thousands of page faults (see its docstring)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
