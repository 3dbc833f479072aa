"""`stftblur eval` and stftblur.evaluation on folders the tests write, against scikit-image."""

from __future__ import annotations

import csv
import json
import struct
import zlib
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from stftblur import lpc_si
from stftblur.evaluation import pair_images
from stftblur.io import find_images, read_image
from stftblur_cli.main import cli

RNG = np.random.default_rng(0)


def _write(path: Path, arr: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".tif":
        tifffile.imwrite(path, arr, photometric="rgb" if arr.ndim == 3 else "minisblack")
    else:
        Image.fromarray(arr).save(path, **kwargs)


def _degrade(arr: np.ndarray) -> np.ndarray:
    """Add noise, keeping the dtype (the 'restored' image of a pair)."""
    top = np.iinfo(arr.dtype).max
    noisy = arr.astype(np.float64) + RNG.normal(0, 0.04 * top, arr.shape)
    return np.clip(np.round(noisy), 0, top).astype(arr.dtype)


def _to_unit(arr: np.ndarray) -> np.ndarray:
    """(H, W[, C]) integers -> (C, H, W) float64 in [0, 1], alpha dropped."""
    x = arr.astype(np.float64) / np.iinfo(arr.dtype).max
    x = x[..., None] if x.ndim == 2 else x[..., :3]
    return np.moveaxis(x, -1, 0)


CAM = data.camera()
AST = data.astronaut()


def _cases() -> Dict[str, np.ndarray]:
    """Reference images by relative path: 8/16-bit gray, RGB, RGBA, odd sizes, BMP, TIFF."""
    alpha = RNG.integers(0, 256, (30, 30, 1), dtype=np.uint8)
    return {
        "gray8.png": CAM[100:140, 200:248],
        "gray8_same_size.png": CAM[300:340, 100:148],
        "sub/gray16.png": CAM[200:233, 50:95].astype(np.uint16) * 257,
        "rgb.png": AST[100:132, 150:186],
        "rgba.png": np.concatenate([AST[200:230, 200:230], alpha], axis=-1),
        "odd.bmp": CAM[10:47, 300:329],
        "sub/deeper/rgb16.tif": AST[50:74, 60:88].astype(np.uint16) * 257,
    }


@pytest.fixture
def pair_dirs(tmp_path: Path) -> Tuple[Path, Path, Dict[str, Tuple[np.ndarray, np.ndarray]]]:
    """images/ (degraded) and reference/ (clean) with the same relative paths."""
    arrays = {}
    for rel, ref in _cases().items():
        img = _degrade(ref)
        if rel == "rgba.png":
            img[..., 3] = RNG.integers(0, 256, img.shape[:2])  # a different alpha must not matter
        _write(tmp_path / "reference" / rel, ref)
        _write(tmp_path / "images" / rel, img)
        arrays[rel] = (img, ref)
    return tmp_path / "images", tmp_path / "reference", arrays


def _run(*args: str):
    return CliRunner().invoke(cli, ["eval", *args], catch_exceptions=False)


def test_psnr_ssim_and_lpc_si_match_scikit_image_and_the_library(pair_dirs, tmp_path):
    images, reference, arrays = pair_dirs
    out = tmp_path / "eval.json"
    result = _run("--images", str(images), "--reference", str(reference), "--json", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    rows = {r["path"]: r for r in report["images"]}
    assert set(rows) == set(arrays)
    for rel, (img, ref) in arrays.items():
        x, y = _to_unit(img), _to_unit(ref)
        row = rows[rel]
        assert row["reference"] == rel and row["errors"] == []
        assert (row["channels"], row["height"], row["width"]) == x.shape
        assert row["values"]["psnr"] == pytest.approx(peak_signal_noise_ratio(y, x, data_range=1.0), abs=2e-3), rel
        expected_ssim = structural_similarity(
            y, x, data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert row["values"]["ssim"] == pytest.approx(expected_ssim, abs=1e-5), rel
        assert row["values"]["lpc_si"] == pytest.approx(lpc_si(torch.from_numpy(x)[None]).item(), abs=1e-5), rel
    assert report["metrics"] == ["lpc_si", "psnr", "ssim"]
    assert report["unreadable"] == {} and report["mismatched"] == {} and report["unpaired_images"] == []


def test_jpeg_is_read_as_pillow_decodes_it(tmp_path):
    ref = AST[0:40, 0:44]
    _write(tmp_path / "ref" / "photo.jpg", ref, quality=95)
    _write(tmp_path / "img" / "photo.jpg", _degrade(ref), quality=95)
    out = tmp_path / "e.json"
    assert _run("--images", str(tmp_path / "img"), "--reference", str(tmp_path / "ref"), "--json", str(out)).exit_code == 0
    x = np.moveaxis(np.asarray(Image.open(tmp_path / "img" / "photo.jpg")), -1, 0) / 255.0
    y = np.moveaxis(np.asarray(Image.open(tmp_path / "ref" / "photo.jpg")), -1, 0) / 255.0
    row = json.loads(out.read_text())["images"][0]
    assert row["values"]["psnr"] == pytest.approx(peak_signal_noise_ratio(y, x, data_range=1.0), abs=2e-3)


def test_without_reference_lpc_si_and_summary(pair_dirs, tmp_path):
    images, _, arrays = pair_dirs
    out = tmp_path / "nr.json"
    result = _run("--images", str(images), "--json", str(out), "--per-image")
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["metrics"] == ["lpc_si"] and report["reference_dir"] is None
    assert report["stftblur_version"]
    assert report["settings"]["lpc_si"]["C"] == 2.0 and report["settings"]["lpc_si"]["beta_k"] == 1e-4
    values = np.array([r["values"]["lpc_si"] for r in report["images"]])
    assert len(values) == len(arrays) and np.all((values > 0) & (values < 1))
    summary = report["summary"]["lpc_si"]
    assert summary["count"] == len(values)
    assert summary["mean"] == pytest.approx(values.mean())
    assert summary["std"] == pytest.approx(values.std(ddof=1))
    assert summary["median"] == pytest.approx(np.median(values))
    # The terminal table: the summary row and one row per image.
    assert "lpc_si" in result.output and "median" in result.output
    for rel in arrays:
        assert rel in result.output


def test_corrupt_files_are_reported_and_the_rest_written(pair_dirs, tmp_path):
    images, reference, arrays = pair_dirs
    (images / "garbage.png").write_bytes(b"this is not a png")
    good = (images / "gray8.png").read_bytes()
    (images / "truncated.png").write_bytes(good[: len(good) // 2])
    out, table = tmp_path / "bad.json", tmp_path / "bad.csv"
    result = _run("--images", str(images), "--json", str(out), "--csv", str(table))
    assert result.exit_code == 2
    assert "garbage.png" in result.output and "truncated.png" in result.output
    report = json.loads(out.read_text())
    assert set(report["unreadable"]) == {"garbage.png", "truncated.png"}
    rows = {r["path"]: r for r in report["images"]}
    assert all(rows[rel]["values"]["lpc_si"] is not None for rel in arrays)
    assert rows["garbage.png"]["values"] == {} and rows["garbage.png"]["errors"]
    assert report["summary"]["lpc_si"]["count"] == len(arrays)
    assert table.exists()
    # --skip-bad: the same report, exit code 0.
    result = _run("--images", str(images), "--json", str(out), "--force", "--skip-bad")
    assert result.exit_code == 0, result.output
    assert "garbage.png" in result.output


def test_size_mismatch_and_unpaired_files(pair_dirs, tmp_path):
    images, reference, arrays = pair_dirs
    _write(images / "mismatch.png", CAM[:20, :30])
    _write(reference / "mismatch.png", CAM[:21, :30])
    _write(images / "only_image.png", CAM[:16, :16])
    _write(reference / "only_reference.png", CAM[:16, :16])
    out = tmp_path / "m.json"
    result = _run("--images", str(images), "--reference", str(reference), "--json", str(out))
    assert result.exit_code == 2
    assert "mismatch.png" in result.output and "size mismatch" in result.output
    assert "only_image.png" in result.output and "only_reference.png" in result.output
    report = json.loads(out.read_text())
    rows = {r["path"]: r for r in report["images"]}
    assert rows["mismatch.png"]["values"]["psnr"] is None and rows["mismatch.png"]["values"]["lpc_si"] is not None
    assert "size mismatch" in report["mismatched"]["mismatch.png"]
    assert report["unpaired_images"] == ["only_image.png"]
    assert report["unpaired_references"] == ["only_reference.png"]
    assert rows["only_image.png"]["values"]["psnr"] is None
    assert report["summary"]["psnr"]["count"] == len(arrays)
    assert _run("--images", str(images), "--reference", str(reference), "--skip-bad").exit_code == 0


def test_non_image_files_are_ignored_and_counted(tmp_path):
    d = tmp_path / "samples"
    for i in range(3):
        _write(d / f"sample-{i:05d}.png", CAM[i * 30 : i * 30 + 28, :28])
    (d / "notes.txt").write_text("hello")
    (d / "z.npy").write_bytes(b"\x93NUMPY")
    _write(d / ".hidden" / "x.png", CAM[:28, :28])
    out = tmp_path / "s.json"
    result = _run("--images", str(d), "--json", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert len(report["images"]) == 3
    assert report["ignored_files"]["count"] == 3
    assert sorted(report["ignored_files"]["paths"]) == [".hidden/x.png", "notes.txt", "z.npy"]
    assert "3 non-image files ignored" in result.output


def test_csv_matches_json(pair_dirs, tmp_path):
    images, reference, _ = pair_dirs
    j, c = tmp_path / "r.json", tmp_path / "r.csv"
    assert _run("--images", str(images), "--reference", str(reference), "--json", str(j), "--csv", str(c)).exit_code == 0
    report = json.loads(j.read_text())
    with open(c, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "reference", "height", "width", "channels", "lpc_si", "psnr", "ssim", "errors", "notes"]
    assert [r["path"] for r in rows] == [r["path"] for r in report["images"]]
    for row, item in zip(rows, report["images"]):
        for m in ("lpc_si", "psnr", "ssim"):
            assert float(row[m]) == item["values"][m]
        assert int(row["height"]) == item["height"] and row["errors"] == ""


def test_identical_images_give_infinite_psnr_written_as_inf(tmp_path):
    _write(tmp_path / "a" / "x.png", CAM[:32, :32])
    _write(tmp_path / "b" / "x.png", CAM[:32, :32])
    j, c = tmp_path / "r.json", tmp_path / "r.csv"
    result = _run("--images", str(tmp_path / "a"), "--reference", str(tmp_path / "b"), "--json", str(j), "--csv", str(c))
    assert result.exit_code == 0, result.output
    report = json.loads(j.read_text())  # strict JSON: no Infinity literal
    assert report["images"][0]["values"]["psnr"] == "inf" and report["summary"]["psnr"]["mean"] == "inf"
    with open(c, newline="") as f:
        assert float(next(csv.DictReader(f))["psnr"]) == float("inf")
    assert "inf" in result.output


def test_missing_or_empty_folders_and_bad_options_exit_2_with_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("")
    for args, message in [
        (["--images", str(tmp_path / "nope")], "no such directory"),
        (["--images", str(empty)], "no images found (1 other files ignored)"),
        (["--images", str(empty), "--reference", str(tmp_path / "nope")], "no such directory"),
        (["--images", str(empty), "--metrics", "psnr"], "need a reference folder"),
        (["--images", str(empty), "--metrics", "sharpness"], "--metrics"),
    ] + ([] if torch.cuda.is_available() else [(["--images", str(empty), "--device", "cuda"], "no CUDA device")]):
        result = _run(*args)
        assert result.exit_code == 2, args
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], result.output


def test_existing_outputs_are_not_overwritten_without_force(pair_dirs, tmp_path):
    images, _, _ = pair_dirs
    for option, name in (("--json", "r.json"), ("--csv", "r.csv"), ("--plot", "r.png")):
        path = tmp_path / name
        path.write_text("keep me")
        result = _run("--images", str(images), option, str(path))
        assert result.exit_code == 2 and "already exists" in result.output and "--force" in result.output
        assert path.read_text() == "keep me"
        assert _run("--images", str(images), option, str(path), "--force").exit_code == 0
        assert path.read_bytes() != b"keep me"
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    same = tmp_path / "same.out"
    assert _run("--images", str(images), "--json", str(same), "--csv", str(same)).exit_code == 2


def test_train_vae_and_sample_layouts(tmp_path):
    """What `train-vae` and `sample` really write is what `stftblur eval` reads: a tiny run (one
    step on 50 random images) on a tiny IDX dataset, then eval on its recon/ + reference/ and on
    the sample's samples/."""
    from ._vae_support import STEMS, write_idx_dataset

    data = tmp_path / "data"
    test_images = write_idx_dataset(data, n_train=50, n_test=6)[STEMS[2]]
    run = tmp_path / "run"
    runner = CliRunner()
    trained = runner.invoke(cli, ["train-vae", "--out", str(run), "--data-dir", str(data), "--loss", "l2",
                                  "--epochs", "1", "--n-export", "6", "--n-samples", "4", "--device", "cpu",
                                  "--threads", "1", "--no-progress"], catch_exceptions=False)
    assert trained.exit_code == 0, trained.output
    sampled = runner.invoke(cli, ["sample", "--checkpoint", str(run), "--n", "3", "--out", str(tmp_path / "s"),
                                  "--threads", "1"], catch_exceptions=False)
    assert sampled.exit_code == 0, sampled.output

    j = tmp_path / "vae.json"
    result = _run("--images", str(run / "recon"), "--reference", str(run / "reference"), "--json", str(j),
                  "--metrics", "psnr,ssim", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    report = json.loads(j.read_text())
    rows = {r["path"]: r for r in report["images"]}
    assert sorted(rows) == [f"test-{i:05d}.png" for i in range(6)]
    assert report["unpaired_images"] == [] and report["unpaired_references"] == [] and not report["mismatched"]
    for i in range(6):
        row = rows[f"test-{i:05d}.png"]
        assert row["reference"] == row["path"] and row["errors"] == []
        ref = np.asarray(Image.open(run / "reference" / row["path"]))
        rec = np.asarray(Image.open(run / "recon" / row["path"]))
        # reference/ holds the test images in order, binarized at 0.5 as the run trained on them.
        np.testing.assert_array_equal(ref, np.where(test_images[i] > 127.5, 255, 0))
        assert row["values"]["psnr"] == pytest.approx(peak_signal_noise_ratio(ref, rec, data_range=255), abs=2e-3)
        expected_ssim = structural_similarity(ref / 255.0, rec / 255.0, data_range=1.0, gaussian_weights=True,
                                              sigma=1.5, use_sample_covariance=False)
        assert row["values"]["ssim"] == pytest.approx(expected_ssim, abs=1e-5)

    result = _run("--images", str(tmp_path / "s" / "samples"), "--metrics", "lpc_si", "--json", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    samples = json.loads((tmp_path / "s.json").read_text())
    assert sorted(r["path"] for r in samples["images"]) == [f"sample-{i:05d}.png" for i in range(3)]
    assert samples["summary"]["lpc_si"]["count"] == 3


def test_pairing_by_stem_and_small_images(tmp_path):
    _write(tmp_path / "img" / "a.png", CAM[:8, :9])
    _write(tmp_path / "ref" / "a.tif", CAM[:8, :9])
    j = tmp_path / "r.json"
    result = _run("--images", str(tmp_path / "img"), "--reference", str(tmp_path / "ref"), "--json", str(j), "--skip-bad")
    assert result.exit_code == 0, result.output
    row = json.loads(j.read_text())["images"][0]
    assert row["reference"] == "a.tif" and row["values"]["psnr"] == "inf"
    assert row["values"]["ssim"] is None and "11x11" in row["errors"][0]


def _png16_rgb(path: Path, arr: np.ndarray) -> None:
    """A minimal 16-bit RGB PNG writer (Pillow cannot write one)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_reader_scaling_and_modes(tmp_path):
    _write(tmp_path / "g16.png", np.array([[0, 65535, 257]], np.uint16))
    np.testing.assert_allclose(read_image(tmp_path / "g16.png"), [[[0.0, 1.0, 257 / 65535]]], rtol=1e-6)
    _write(tmp_path / "la.png", np.array([[[10, 0], [20, 255]]], np.uint8))
    np.testing.assert_allclose(read_image(tmp_path / "la.png"), [[[10 / 255, 20 / 255]]], rtol=1e-6)
    rgb = AST[:4, :5]
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (3, 4, 5)
    _write(tmp_path / "t16.tif", (AST[:4, :5].astype(np.uint16) * 257))
    np.testing.assert_allclose(read_image(tmp_path / "t16.tif"), np.moveaxis(rgb, -1, 0) / 255.0, rtol=1e-6)
    arr16 = (RNG.random((6, 7, 3)) * 65535).astype(np.uint16)
    _png16_rgb(tmp_path / "c16.png", arr16)
    images, ignored = find_images(tmp_path)
    assert "c16.png" in images and ignored == []
    from stftblur.io import probe_image

    assert "8-bit precision" in (probe_image(tmp_path / "c16.png").note or "")
    np.testing.assert_allclose(read_image(tmp_path / "c16.png"), np.moveaxis(arr16 >> 8, -1, 0) / 255.0, rtol=1e-6)


def test_pair_images_ambiguity():
    pairs, lone_images, lone_refs = pair_images(["a.png", "b.png", "c.jpg", "c.tif"], ["a.png", "b.jpg", "b.tif", "c.png"])
    assert pairs == {"a.png": "a.png"}
    assert lone_images == ["b.png", "c.jpg", "c.tif"] and lone_refs == ["b.jpg", "b.tif", "c.png"]
