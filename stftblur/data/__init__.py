"""Datasets: MNIST and Fashion-MNIST from their IDX files, held in memory as tensors."""

from stftblur.data.datasets import (
    DATASETS,
    DatasetNotFoundError,
    ImageSet,
    dataset_files,
    find_dataset,
    load_dataset,
    user_cache_dir,
)
from stftblur.data.idx import IDXFormatError, parse_idx, read_idx

__all__ = [
    "DATASETS",
    "DatasetNotFoundError",
    "IDXFormatError",
    "ImageSet",
    "dataset_files",
    "find_dataset",
    "load_dataset",
    "parse_idx",
    "read_idx",
    "user_cache_dir",
]
