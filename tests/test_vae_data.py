"""stftblur.data: IDX parsing, the dataset lookup order and its errors, real MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from stftblur.data import (
    DatasetNotFoundError,
    IDXFormatError,
    find_dataset,
    load_dataset,
    parse_idx,
    read_idx,
)

from ._vae_support import STEMS, write_idx_dataset
from ._vae_support import idx_bytes as _idx
from .conftest import require_shared


def _write_dataset(directory: Path, n_train: int = 6, n_test: int = 4, gz: bool = False, seed: int = 0) -> Path:
    write_idx_dataset(directory, n_train, n_test, gz, seed)
    return directory


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No $STFTBLUR_DATA and an empty user cache, so only what a test sets up is found."""
    monkeypatch.delenv("STFTBLUR_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_parse_idx_round_trip() -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(_idx(a)), a)


def test_bad_magic_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(b"\x12\x34\x08\x03" + bytes(20))
    with pytest.raises(IDXFormatError, match="bad IDX magic.*train-images|train-images.*bad IDX magic"):
        read_idx(p)


def test_truncated_file_names_the_file_and_sizes(tmp_path: Path) -> None:
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(_idx(np.zeros((3, 28, 28)))[:-100])
    with pytest.raises(IDXFormatError, match=r"t10k-images-idx3-ubyte: truncated.*\(3, 28, 28\)"):
        read_idx(p)


def test_truncated_gzip_is_a_format_error(tmp_path: Path) -> None:
    p = tmp_path / "x-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(_idx(np.zeros(1000)))[:30])
    with pytest.raises(IDXFormatError, match="x-idx1-ubyte.gz"):
        read_idx(p)


def test_gzip_and_plain_files_load_alike(isolated: Path) -> None:
    plain = load_dataset("mnist", "test", _write_dataset(isolated / "plain"), binarize=False)
    packed = load_dataset("mnist", "test", _write_dataset(isolated / "gz", gz=True), binarize=False)
    assert torch.equal(plain.images, packed.images)
    assert plain.images.shape == (4, 1, 28, 28) and plain.labels.dtype == torch.int64


def test_binarization_is_the_papers_threshold(isolated: Path) -> None:
    written = write_idx_dataset(isolated / "d")[STEMS[0]]
    written[0, 0, :4] = [127, 128, 0, 255]  # either side of 0.5 * 255 = 127.5
    (isolated / "d" / STEMS[0]).write_bytes(_idx(written))
    gray = load_dataset("mnist", "train", isolated / "d", binarize=False).images
    binary = load_dataset("mnist", "train", isolated / "d", binarize=True).images
    np.testing.assert_array_equal(gray[:, 0].numpy(), written.astype(np.float32) / 255)
    np.testing.assert_array_equal(binary[:, 0].numpy(), (written >= 128).astype(np.float32))
    assert binary[0, 0, 0, :4].tolist() == [0.0, 1.0, 0.0, 1.0]


def test_missing_data_dir_is_one_line(isolated: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as e:
        find_dataset("mnist", data_dir=isolated / "nowhere", download=False)
    assert "nowhere" in str(e.value) and "does not exist" in str(e.value) and "\n" not in str(e.value)


def test_incomplete_dir_lists_the_missing_files(isolated: Path) -> None:
    d = _write_dataset(isolated / "d")
    (d / STEMS[3]).unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks t10k-labels-idx1-ubyte"):
        find_dataset("mnist", data_dir=d, download=False)


def test_lookup_failure_lists_everything_tried(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STFTBLUR_DATA", str(isolated / "env"))
    monkeypatch.setattr("stftblur.data.datasets._SYSTEM_DIRS", {"fashion-mnist": (isolated / "system",)})
    with pytest.raises(DatasetNotFoundError) as e:
        find_dataset("fashion-mnist", download=False)
    msg = str(e.value)
    for expected in ("$STFTBLUR_DATA", str(isolated / "env"), "user cache", str(isolated / "cache"),
                     f"system {isolated / 'system'}: does not exist", "download: disabled", "--data-dir",
                     "apt-get install dataset-fashion-mnist"):
        assert expected in msg


def test_failed_download_is_reported_not_raised(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stftblur.data.datasets as ds

    def offline(name: str, target: Path, timeout: float) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nName or service not known")

    monkeypatch.setattr(ds, "_download", offline)
    with pytest.raises(DatasetNotFoundError, match="download into .*: failed \\(Error downloading .* Name or service"):
        find_dataset("mnist", download=True)


def test_env_root_with_dataset_subdirectories(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_dataset(isolated / "root" / "mnist", seed=1)
    _write_dataset(isolated / "root" / "fashion-mnist", seed=2)
    monkeypatch.setenv("STFTBLUR_DATA", str(isolated / "root"))
    assert find_dataset("mnist", download=False)[("test", "images")].parent.name == "mnist"
    assert find_dataset("fashion-mnist", download=False)[("test", "images")].parent.name == "fashion-mnist"


def test_env_dir_named_mnist_is_never_fashion(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STFTBLUR_DATA", str(_write_dataset(isolated / "mnist")))
    monkeypatch.setattr("stftblur.data.datasets._SYSTEM_DIRS", {})
    assert find_dataset("mnist", download=False)
    with pytest.raises(DatasetNotFoundError):
        find_dataset("fashion-mnist", download=False)


def test_user_cache_and_torchvision_layout(isolated: Path) -> None:
    _write_dataset(isolated / "cache" / "stftblur" / "mnist" / "MNIST" / "raw", gz=True)
    files = find_dataset("mnist", download=False)
    assert files[("train", "images")].name == "train-images-idx3-ubyte.gz"


def test_label_count_mismatch(isolated: Path) -> None:
    d = _write_dataset(isolated / "d")
    (d / STEMS[3]).write_bytes(_idx(np.zeros(3)))
    with pytest.raises(IDXFormatError, match="expected 4 labels"):
        load_dataset("mnist", "test", d)


def test_real_mnist() -> None:
    d = require_shared("data", "mnist")
    test = load_dataset("mnist", "test", d)
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == torch.float32
    assert test.labels[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]
    assert set(test.images.unique().tolist()) == {0.0, 1.0}
    # The uncompressed training images have the canonical md5 (README of ../shared).
    import hashlib

    raw = gzip.decompress((d / "train-images-idx3-ubyte.gz").read_bytes())
    assert hashlib.md5(raw).hexdigest() == "6bbc9ace898e44ae57da46a324031adb"
