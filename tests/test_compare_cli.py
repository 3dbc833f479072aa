"""The spectral deficit in `stftblur eval --reference-set` and `stftblur compare` (issue 11), on
tiny synthetic folders, against a numpy transcription of the definition and scikit-image."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio

from stftblur_cli.main import cli

SIZE = 32


def _run(*args: str):
    return CliRunner().invoke(cli, list(args))


def _sharp(seed: int, size: int = SIZE) -> np.ndarray:
    """A textured 8-bit image with power up to Nyquist (noise, lightly smoothed, plus an edge)."""
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.uniform(0, 255, (size, size)), 0.5, mode="wrap")
    x[:, size // 2 :] += 40
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _save(folder: Path, images: Dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in images.items():
        Image.fromarray(arr).save(folder / name)
    return folder


def _blur(arr: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(np.round(gaussian_filter(arr.astype(np.float64), sigma, mode="wrap")), 0, 255).astype(np.uint8)


def _band_power_numpy(folder: Path, band=(0.25, 0.5)) -> float:
    """Mean Hann-windowed power over the DFT frequencies whose radius rounds (in units of 1/N) to a
    bin centre in the band: the definition of docs/metrics.md written again with numpy."""
    n = SIZE
    h = np.sin(np.pi * np.arange(n) / n) ** 2  # periodic Hann
    w = np.outer(h, h)
    f = np.fft.fftfreq(n)
    radius = np.hypot(f[:, None], f[None, :])
    k = np.floor(radius * n + 0.5)
    centre = k / n
    inside = (radius > 0) & (k <= n // 2) & (centre >= band[0] - 1e-12) & (centre <= band[1] + 1e-12)
    means = []
    for path in sorted(folder.iterdir()):
        x = np.asarray(Image.open(path), dtype=np.float64) / 255.0
        x = (x - (w * x).sum() / w.sum()) * w
        p = np.abs(np.fft.fft2(x)) ** 2 / (w * w).sum()
        means.append(p[inside].mean())
    return float(np.mean(means))


@pytest.fixture
def sets(tmp_path):
    """real/ (6 sharp images), blur/ (5 other sharp images blurred, sigma 1), copy/ (real/ again)."""
    real = _save(tmp_path / "real", {f"r{i}.png": _sharp(i) for i in range(6)})
    blur = _save(tmp_path / "blur", {f"b{i}.png": _blur(_sharp(100 + i), 1.0) for i in range(5)})
    copy = _save(tmp_path / "copy", {f"r{i}.png": _sharp(i) for i in range(6)})
    return real, blur, copy


def test_blurred_folder_has_the_positive_deficit_of_the_definition(sets, tmp_path):
    real, blur, _ = sets
    out = tmp_path / "e.json"
    result = _run("eval", "--images", str(blur), "--reference-set", str(real), "--json", str(out))
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    deficit = doc["set_metrics"]["spectral_deficit_db"]
    expected = 10 * np.log10(_band_power_numpy(real) / _band_power_numpy(blur))
    assert expected > 5 and deficit == pytest.approx(expected, rel=1e-4)
    details = doc["set_metrics"]["spectral_deficit"]
    assert details["band"] == [0.25, 0.5] and details["window"] == "hann" and details["n_bins"] == SIZE // 2
    assert details["n_images"] == 5 and details["n_reference_images"] == 6 and details["image_size"] == [SIZE, SIZE]
    assert len(details["ratio"]) == len(details["freqs"]) == SIZE // 2 and details["freqs"][-1] == 0.5
    assert details["ratio"][-1] < details["ratio"][0] < 1.5  # blur removes the high frequencies most
    assert doc["reference_set_dir"] == str(real)
    assert "summary" in doc and "lpc_si" in doc["summary"]  # the per-image report is unchanged
    assert f"{deficit:.4f} dB" in result.output


def test_identical_sets_give_zero_and_a_band_changes_the_value(sets, tmp_path):
    real, blur, copy = sets
    out = tmp_path / "e.json"
    assert _run("eval", "--images", str(copy), "--reference-set", str(real), "--json", str(out)).exit_code == 0
    assert json.loads(out.read_text())["set_metrics"]["spectral_deficit_db"] == 0.0
    low = _run("eval", "--images", str(blur), "--reference-set", str(real), "--band", "0", "0.125", "--json", str(out), "--force")
    assert low.exit_code == 0, low.output
    expected = 10 * np.log10(_band_power_numpy(real, (0, 0.125)) / _band_power_numpy(blur, (0, 0.125)))
    assert json.loads(out.read_text())["set_metrics"]["spectral_deficit_db"] == pytest.approx(expected, rel=1e-4)


def test_without_reference_set_the_report_has_no_set_metrics(sets, tmp_path):
    _, blur, _ = sets
    out = tmp_path / "e.json"
    assert _run("eval", "--images", str(blur), "--json", str(out)).exit_code == 0
    doc = json.loads(out.read_text())
    assert doc["set_metrics"] == {} and doc["reference_set_dir"] is None


def _one_line_error(result, *fragments: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], result.output


def test_bad_reference_sets_are_one_line_errors(sets, tmp_path):
    real, blur, _ = sets
    small = _save(tmp_path / "small", {"s.png": _sharp(0, 24)})
    out = tmp_path / "e.json"
    result = _run("eval", "--images", str(small), "--reference-set", str(real), "--json", str(out))
    _one_line_error(result, "24x24", f"{SIZE}x{SIZE}")
    assert not out.exists()
    mixed = _save(tmp_path / "mixed", {"a.png": _sharp(0), "b.png": _sharp(1, 24)})
    _one_line_error(_run("eval", "--images", str(blur), "--reference-set", str(mixed)), "several sizes", "24x24", f"{SIZE}x{SIZE}")
    _one_line_error(_run("eval", "--images", str(blur), "--reference-set", str(tmp_path / "nope")), "--reference-set", "no such directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(_run("eval", "--images", str(blur), "--reference-set", str(empty)), "no readable image")
    _one_line_error(_run("eval", "--images", str(blur), "--reference-set", str(real), "--band", "0.3", "0.2"), "--band")
    _one_line_error(_run("compare", str(small), "--reference-set", str(real)), "24x24", f"{SIZE}x{SIZE}")


def test_plot_draws_the_spectra_and_is_not_overwritten(sets, tmp_path):
    real, blur, _ = sets
    plot = tmp_path / "spectrum.png"
    assert _run("eval", "--images", str(blur), "--reference-set", str(real), "--plot", str(plot)).exit_code == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width = Image.open(plot).size[0]
    assert width > 1000  # histograms beside the two spectrum panels (without a set: 420 pixels)
    plot.write_text("keep me")
    result = _run("eval", "--images", str(blur), "--reference-set", str(real), "--plot", str(plot))
    assert result.exit_code == 2 and "--force" in result.output and plot.read_text() == "keep me"
    again = _run("compare", str(blur), "--reference-set", str(real), "--plot", str(plot))
    assert again.exit_code == 2 and plot.read_text() == "keep me"
    assert _run("compare", str(blur), "--reference-set", str(real), "--plot", str(plot), "--force").exit_code == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"


def _table_rows(output: str) -> List[List[str]]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("folder"))
    body = []
    for line in lines[start + 2 :]:
        if not line or line.startswith("spectral_deficit_db:") or line.startswith("wrote"):
            break
        body.append(line.split())
    return [lines[start].split(), *body]


def test_compare_prints_one_row_per_folder_and_writes_json_and_csv(sets, tmp_path):
    real, blur, copy = sets
    blur_copy = _save(tmp_path / "blurcopy", {f"r{i}.png": _blur(_sharp(i), 1.0) for i in range(6)})
    js, cs = tmp_path / "c.json", tmp_path / "c.csv"
    result = _run("compare", str(copy), str(blur), str(blur_copy), "--reference-set", str(real),
                  "--reference", str(real), "--json", str(js), "--csv", str(cs))
    assert result.exit_code == 0, result.output
    header, *rows = _table_rows(result.output)
    assert header == ["folder", "images", "pairs", "lpc_si_mean", "psnr_mean", "ssim_mean", "spectral_deficit_db"]
    assert [r[0] for r in rows] == [str(copy), str(blur), str(blur_copy)]
    assert [r[1:3] for r in rows] == [["6", "6"], ["5", "0"], ["6", "6"]]
    assert rows[0][-1] == "0.0000" and rows[0][4] == "inf" and rows[1][4] == "-"  # blur/ has no pairs

    doc = json.loads(js.read_text())
    assert doc["columns"] == header and len(doc["rows"]) == 3 and len(doc["reports"]) == 3
    by_folder = {r["folder"]: r for r in doc["rows"]}
    assert by_folder[str(copy)]["spectral_deficit_db"] == 0.0
    for folder in (blur, blur_copy):
        expected = 10 * np.log10(_band_power_numpy(real) / _band_power_numpy(folder))
        assert by_folder[str(folder)]["spectral_deficit_db"] == pytest.approx(expected, rel=1e-4)
    psnr = np.mean([peak_signal_noise_ratio(np.asarray(Image.open(real / p.name)), np.asarray(Image.open(p)), data_range=255)
                    for p in sorted(blur_copy.iterdir())])
    assert by_folder[str(blur_copy)]["psnr_mean"] == pytest.approx(psnr, rel=1e-4)
    assert doc["reference_set"]["n_images"] == 6 and doc["reference_set"]["band"] == [0.25, 0.5]
    assert doc["reports"][1]["set_metrics"]["spectral_deficit_db"] == by_folder[str(blur)]["spectral_deficit_db"]

    with cs.open() as f:
        table = list(csv.DictReader(f))
    assert [r["folder"] for r in table] == [str(copy), str(blur), str(blur_copy)]
    assert table[0]["spectral_deficit_db"] == "0.0" and table[0]["psnr_mean"] == "inf" and table[1]["psnr_mean"] == ""
    assert float(table[2]["spectral_deficit_db"]) == by_folder[str(blur_copy)]["spectral_deficit_db"]


def test_compare_without_a_reference_set_and_its_bad_input(sets, tmp_path):
    real, blur, _ = sets
    result = _run("compare", str(real), str(blur))
    assert result.exit_code == 0, result.output
    header, *rows = _table_rows(result.output)
    assert header == ["folder", "images", "lpc_si_mean"] and len(rows) == 2
    _one_line_error(_run("compare", str(real), str(blur), "--plot", str(tmp_path / "p.png")), "--reference-set")
    _one_line_error(_run("compare", str(real), str(real)), "twice")
    _one_line_error(_run("compare", str(real), str(tmp_path / "nope")), "no such directory")
    _one_line_error(_run("compare", str(blur), "--reference", str(real)), str(blur), "counterpart")
    same = tmp_path / "same.out"
    _one_line_error(_run("compare", str(real), "--json", str(same), "--csv", str(same)), "same file")
    assert _run("compare").exit_code == 2
