"""The lean core (issue #24): what the core install holds, and what a missing extra says.

The packages of the extras are installed in the test environment; a missing one is simulated by
blocking its import (``sys.modules[name] = None``, which Python's import answers with
ModuleNotFoundError). tests/test_wheel.py checks the real thing: a fresh venv without them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stftblur.errors import MissingExtraError, StftblurError, require_extra
from stftblur_cli.main import cli

from .conftest import ROOT

# What the core install must not pull in, as pip names and as import names.
EXTRA_PACKAGES = ("scipy", "scikit-image", "matplotlib", "kornia", "timm", "torchvision")
EXTRA_MODULES = ("scipy", "skimage", "matplotlib", "kornia", "timm", "torchvision")


def _block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` (and their already imported submodules) fail to import."""
    for name in list(sys.modules):
        if name.split(".")[0] in modules:
            monkeypatch.setitem(sys.modules, name, None)
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_the_core_dependencies_leave_out_every_extra() -> None:
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {Requirement(r).name.lower() for r in project["dependencies"]}
    assert not core & set(EXTRA_PACKAGES)
    assert {"torch", "numpy"} <= core
    extras = project["optional-dependencies"]
    for extra in ("plot", "vision", "skimage", "basicsr", "mmengine", "torchmetrics", "lightning",
                  "frameworks", "bench", "test", "dev", "all"):
        assert extra in extras, extra
    assert any(r.startswith("matplotlib") for r in extras["plot"])
    assert any(r.startswith("scikit-image") for r in extras["skimage"])
    assert {Requirement(r).name for r in extras["vision"]} == {"torchvision", "timm"}


def test_importing_the_library_and_the_cli_loads_no_extra() -> None:
    code = (
        "import sys\n"
        "import stftblur, stftblur.losses, stftblur.metrics, stftblur.models, stftblur.training, stftblur.data\n"
        "import stftblur.evaluation, stftblur.io, stftblur.viz, stftblur.errors, stftblur_cli.main\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {EXTRA_MODULES!r}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_require_extra_names_the_extra_and_keeps_other_import_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _block(monkeypatch, "skimage")
    with pytest.raises(MissingExtraError) as info:
        require_extra("skimage.measure", "skimage", "blur_effect")
    assert str(info.value) == "blur_effect needs scikit-image: pip install 'stftblur[skimage]'"
    assert isinstance(info.value, ImportError) and isinstance(info.value, StftblurError)
    assert info.value.extra == "skimage"
    # An installed package whose own dependency is missing keeps its error (not blamed on the extra).
    pkg = tmp_path / "stftblur_probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import stftblur_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(pkg.parent))
    with pytest.raises(ModuleNotFoundError) as info2:
        require_extra("stftblur_probe_pkg", "plot", "x")
    assert not isinstance(info2.value, MissingExtraError)
    assert info2.value.name == "stftblur_no_such_dependency"


def test_figures_without_matplotlib_name_the_plot_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from stftblur.evaluation import evaluate_folder, plot_report
    from stftblur.metrics import plot_spectra, radial_power_spectrum
    from stftblur.viz import image_panels

    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(tmp_path / "a.png")
    report = evaluate_folder(tmp_path)
    spectrum = radial_power_spectrum(torch.rand(2, 1, 16, 16))
    _block(monkeypatch, "matplotlib")
    for call in (lambda: image_panels({"a": torch.rand(1, 1, 8, 8)}),
                 lambda: plot_spectra(spectrum, spectrum),
                 lambda: plot_report(report, tmp_path / "p.png")):
        with pytest.raises(MissingExtraError, match=r"needs matplotlib: pip install 'stftblur\[plot\]'$"):
            call()
    assert not (tmp_path / "p.png").exists()


def test_blur_effect_without_scikit_image_names_the_skimage_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from stftblur.metrics import blur_effect, lpc_si

    _block(monkeypatch, "skimage")
    with pytest.raises(MissingExtraError, match=r"pip install 'stftblur\[skimage\]'"):
        blur_effect(torch.rand(1, 1, 16, 16))
    assert lpc_si(torch.rand(1, 1, 32, 32)).shape == (1,)  # the core metrics need no extra


def test_a_download_without_torchvision_names_the_vision_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from stftblur.data import DatasetNotFoundError, find_dataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("STFTBLUR_DATA", str(tmp_path / "nothing"))
    _block(monkeypatch, "torchvision")
    with pytest.raises(DatasetNotFoundError) as info:
        find_dataset("mnist", download=True)
    assert "a download needs torchvision: pip install 'stftblur[vision]'" in str(info.value)
    assert not (tmp_path / "cache" / "stftblur" / "mnist").exists()


@pytest.mark.parametrize("command", ["eval", "compare", "demo"])
def test_cli_without_matplotlib_says_which_extra_in_one_line(command: str, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(images / "a.png")
    args = {
        "eval": ["eval", "--images", str(images), "--plot", str(tmp_path / "p.png")],
        "compare": ["compare", str(images), "--reference-set", str(images), "--plot", str(tmp_path / "p.png")],
        "demo": ["demo", "--out", str(tmp_path / "demo"), "--steps", "1"],
    }[command]
    _block(monkeypatch, "matplotlib")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("needs matplotlib: pip install 'stftblur[plot]'"), result.output
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "demo").exists()


def test_cli_blur_effect_without_scikit_image_says_which_extra_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(tmp_path / "a.png")
    _block(monkeypatch, "skimage")
    result = CliRunner().invoke(cli, ["eval", "--images", str(tmp_path), "--metrics", "lpc_si,blur_effect",
                                      "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 2, result.output
    assert result.output == "Error: blur_effect needs scikit-image: pip install 'stftblur[skimage]'\n"
    assert not (tmp_path / "e.json").exists()
