"""A wheel that works anywhere (issue #24): built from the checkout, installed with its core
dependencies only into a fresh virtual environment, and used from another folder.

The fresh venv gets no copy of torch (5 GB): the core dependencies' closure, computed from the
built wheel's own ``Requires-Dist`` (no extras), is exposed from this interpreter's environment as a
folder of symlinks (packages with their ``.dist-info``) on the new venv's path, so pip counts them
installed, and the wheel is installed by pip resolving its requirements against exactly those,
offline (``--no-index``). Nothing else of this environment is visible there: the packages of the
extras (scipy, scikit-image, matplotlib, kornia, timm, torchvision) must not be importable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT

# What the core install must not bring: the extras' packages (import names).
FORBIDDEN = ("scipy", "skimage", "matplotlib", "kornia", "timm", "torchvision")
# The repository's top-level entries a build does not read (the rest is copied to build from).
NOT_BUILD_INPUTS = {".git", ".venv", ".ci", "evals", "examples", "docs", "tests", "runs", "build", "dist", "out"}


def _run(cmd: List[str], *, cwd: Path, env: Dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _clean_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "STFTBLUR_", "VIRTUAL_ENV"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1", **extra)
    return env


def _core_closure(requires: List[str]) -> Dict[str, metadata.Distribution]:
    """Every distribution the core requirements need, found in this environment (extras of a
    requirement, e.g. ``cuda-toolkit[cublas]``, followed; ``extra == ...`` markers otherwise off)."""
    found: Dict[str, metadata.Distribution] = {}
    done: Set[Tuple[str, str]] = set()
    todo: List[Tuple[str, str]] = []

    def add(spec: str, extra: str) -> None:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            return
        todo.extend((req.name, e) for e in ("", *sorted(req.extras)))

    for spec in requires:
        add(spec, "")
    while todo:
        name, extra = todo.pop()
        key = (canonicalize_name(name), extra)
        if key in done:
            continue
        done.add(key)
        dist = metadata.distribution(name)  # PackageNotFoundError: this environment lacks a core dependency
        found[key[0]] = dist
        for spec in dist.requires or []:
            add(spec, extra)
    return found


def _expose(dists: Dict[str, metadata.Distribution], folder: Path) -> None:
    """Symlink each distribution's top-level packages/modules and its .dist-info into ``folder``."""
    folder.mkdir()
    for dist in dists.values():
        site = Path(dist.locate_file(""))
        for entry in {Path(f).parts[0] for f in dist.files or []}:
            if entry in ("..", "__pycache__") or entry.endswith(".pth") or (folder / entry).exists():
                continue
            if (site / entry).exists():
                (folder / entry).symlink_to(site / entry)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, str]:
    """The wheel built from a copy of the checkout's build inputs, and pip's verbose build log."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for entry in ROOT.iterdir():
        if entry.name in NOT_BUILD_INPUTS or entry.name.endswith(".egg-info"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, src / entry.name, ignore=ignore)
        else:
            shutil.copy2(entry, src / entry.name)
    cmd = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "--no-index",
           "-w", str(tmp / "dist"), str(src)]
    r = _run(cmd, cwd=tmp, env=_clean_env())
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    (whl,) = (tmp / "dist").glob("stftblur-*.whl")
    return whl, log


def test_the_build_prints_no_deprecation_warning(wheel: Tuple[Path, str]) -> None:
    _, log = wheel
    # e.g. "BuildBackendWarning: `project.license` as a TOML table is deprecated" (not "_deprecated.py").
    bad = [line for line in log.splitlines() if re.search(r"[A-Za-z]*Warning\b|(^|[^_A-Za-z])deprecat", line)]
    assert not bad, "\n".join(bad)


def test_the_wheel_carries_the_c_sources_and_every_shipped_model(wheel: Tuple[Path, str]) -> None:
    whl, _ = wheel
    names = set(zipfile.ZipFile(whl).namelist())
    csrc = {f"stftblur/csrc/{p.name}" for p in (ROOT / "stftblur" / "csrc").glob("*") if p.suffix in (".c", ".h")}
    assert csrc <= names, sorted(csrc - names)
    assert {n for n in names if n.startswith("stftblur/csrc/")} == csrc
    models = {
        f"stftblur/_shipped/{p.parent.name}/{p.name}"
        for d in (ROOT / "models").iterdir() if (d / "model.safetensors").is_file()
        for p in d.iterdir() if p.is_file()
    }
    assert "stftblur/_shipped/ours/model.safetensors" in models
    assert {n for n in names if n.startswith("stftblur/_shipped/")} == models
    for model in (ROOT / "models").glob("*/model.safetensors"):  # byte for byte
        assert zipfile.ZipFile(whl).read(f"stftblur/_shipped/{model.parent.name}/model.safetensors") == model.read_bytes()
    assert not any(n.startswith(("tests/", "evals/", "models/", "examples/")) for n in names)


def test_the_core_install_works_from_any_folder_without_the_extras(wheel: Tuple[Path, str], tmp_path: Path) -> None:
    whl, _ = wheel
    meta = Parser().parsestr(zipfile.ZipFile(whl).read(f"{whl.name.split('-')[0]}-{whl.name.split('-')[1]}.dist-info/METADATA").decode())
    core = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    dists = _core_closure(core)
    assert not {canonicalize_name(m) for m in ("scipy", "scikit-image", "matplotlib", "kornia", "timm", "torchvision")} & set(dists)

    venv = tmp_path / "venv"
    env = _clean_env(STFTBLUR_CACHE=str(tmp_path / "cache"), MPLBACKEND="Agg")
    r = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path, env=env).stdout.strip())
    _expose(dists, tmp_path / "core-deps")
    (site / "core_deps.pth").write_text(str(tmp_path / "core-deps") + "\n")
    r = _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-index", str(whl)], cwd=tmp_path, env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "Successfully installed stftblur" in r.stdout

    elsewhere = tmp_path / "elsewhere"  # not the checkout, nothing of it on the path
    elsewhere.mkdir()
    probe = f"""
import importlib.util, json, sys
import torch
import stftblur
from stftblur.errors import MissingExtraError
from stftblur.losses import LocalPhaseLoss, local_phase_loss, FourierLoss, SSIMLoss
from stftblur.metrics import blur_effect, lpc_si, psnr, radial_power_spectrum, spectral_deficit, ssim
g = torch.Generator().manual_seed(0)
x = torch.rand(2, 1, 32, 32, generator=g, dtype=torch.float64)
y = (x + 0.1 * torch.rand(2, 1, 32, 32, generator=g, dtype=torch.float64)).clamp(0, 1)
x.requires_grad_(True)
loss = LocalPhaseLoss()(x, y)
loss.backward()
out = {{
    "file": stftblur.__file__,
    "forbidden": [m for m in {FORBIDDEN!r} if importlib.util.find_spec(m) is not None],
    "loss": loss.item(), "grad": x.grad.abs().sum().item(),
    "fourier": FourierLoss()(x, y).item(), "ssim_loss": SSIMLoss()(x, y).item(),
    "psnr": psnr(x.detach(), y).tolist(), "ssim": ssim(x.detach(), y).tolist(), "lpc_si": lpc_si(y).tolist(),
    "deficit": spectral_deficit(radial_power_spectrum(x.detach()), radial_power_spectrum(y)).deficit_db,
}}
for name, fn in (("blur_effect", lambda: blur_effect(y)), ("viz", lambda: __import__("stftblur.viz").viz.image_panels({{"a": y}}))):
    try:
        fn()
        out[name] = "no error"
    except MissingExtraError as e:
        out[name] = str(e)
out["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
print(json.dumps(out))
"""
    r = _run([str(py), "-c", probe], cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).resolve().is_relative_to(site.resolve()), got["file"]  # the installed copy, not the checkout
    assert got["forbidden"] == [] and got["loaded"] == []
    assert "pip install 'stftblur[skimage]'" in got["blur_effect"]
    assert "pip install 'stftblur[plot]'" in got["viz"]
    # The installed wheel computes what the checkout computes (the same probe, run from the checkout).
    r = _run([sys.executable, "-c", probe], cwd=ROOT, env=_clean_env())
    assert r.returncode == 0, r.stderr[-4000:]
    want = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("loss", "grad", "fourier", "ssim_loss", "deficit", "psnr", "ssim", "lpc_si"):
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key

    stftblur_cmd = str(venv / "bin" / "stftblur")
    r = _run([stftblur_cmd, "models"], cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    shipped = sorted(d.name for d in (ROOT / "models").iterdir() if (d / "model.safetensors").is_file())
    assert str(site / "stftblur" / "_shipped") in r.stdout
    assert all(f"\n{name} " in r.stdout for name in shipped), r.stdout

    r = _run([stftblur_cmd, "sample", "--checkpoint", "ours", "--n", "12", "--out", "s", "--threads", "1"], cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads((elsewhere / "s" / "sample.json").read_text())["checkpoint"] == "ours"
    assert len(list((elsewhere / "s" / "samples").glob("*.png"))) == 12

    r = _run([stftblur_cmd, "eval", "--images", "s/samples", "--json", "eval.json"], cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads((elsewhere / "eval.json").read_text())
    assert report["metrics"] == ["lpc_si"] and report["summary"]["lpc_si"]["count"] == 12

    r = _run([stftblur_cmd, "eval", "--images", "s/samples", "--plot", "p.png"], cwd=elsewhere, env=env)
    assert r.returncode == 2 and not (elsewhere / "p.png").exists()
    assert len(r.stderr.strip().splitlines()) == 1 and "pip install 'stftblur[plot]'" in r.stderr, r.stderr
