"""A wheel that works anywhere (issue #24): built from the checkout, installed with its core
dependencies only into a fresh virtual environment, and used from another folder: the losses,
the metrics, ``stftblur models``, ``sample --checkpoint ours``, ``eval``, ``train-vae``,
``eval-vae`` and ``compare``.

The fresh venv gets no copy of torch (5 GB): the core dependencies' closure, computed from the
built wheel's own ``Requires-Dist`` (no extras), is exposed from this interpreter's environment as a
folder of symlinks (packages with their ``.dist-info``) on the new venv's path, so pip counts them
installed, and the wheel is installed by pip resolving its requirements against exactly those,
offline (``--no-index``). Nothing else of this environment is visible there: the packages of the
extras (scipy, scikit-image, matplotlib, kornia, timm, torchvision) must not be importable.
"""

from __future__ import annotations

import inspect
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

from ._vae_support import write_idx_dataset
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


def probe_numbers() -> Dict[str, object]:
    """The losses and metrics on fixed inputs; run in the fresh venv (its source is sent there) and here."""
    import torch

    from stftblur.losses import FourierLoss, LocalPhaseLoss, SSIMLoss
    from stftblur.metrics import lpc_si, psnr, radial_power_spectrum, spectral_deficit, ssim

    out: Dict[str, object] = {}
    for dtype in (torch.float32, torch.float64):  # float32 takes the compiled CPU kernels where there is a compiler
        g = torch.Generator().manual_seed(0)
        x = torch.rand(2, 1, 32, 32, generator=g).to(dtype)
        y = (x + 0.1 * torch.rand(2, 1, 32, 32, generator=g).to(dtype)).clamp(0, 1)
        x.requires_grad_(True)
        loss = LocalPhaseLoss()(x, y)
        loss.backward()
        out[str(dtype)] = {
            "loss": loss.item(), "grad": x.grad.abs().sum().item(),
            "fourier": FourierLoss()(x, y).item(), "ssim_loss": SSIMLoss()(x, y).item(),
            "psnr": psnr(x.detach(), y).tolist(), "ssim": ssim(x.detach(), y).tolist(), "lpc_si": lpc_si(y).tolist(),
            "deficit": spectral_deficit(radial_power_spectrum(x.detach()), radial_power_spectrum(y)).deficit_db,
        }
    return out


# Run in the fresh venv from another folder: the numbers, what an extra says when it is missing,
# and the commands (through the CLI's own entry, several in one process to spare torch imports).
DRIVER = """
import importlib.util, json, sys
from typing import Dict
import stftblur
from stftblur.errors import MissingExtraError
from stftblur_cli.main import cli

{probe}
out = {{"file": stftblur.__file__, "numbers": probe_numbers()}}
for name, fn in (("blur_effect", lambda: __import__("stftblur.metrics").metrics.blur_effect(__import__("torch").rand(1, 1, 16, 16))),
                 ("viz", lambda: __import__("stftblur.viz").viz.image_panels({{"a": __import__("torch").rand(1, 1, 8, 8)}}))):
    try:
        fn()
        out[name] = "no error"
    except MissingExtraError as e:
        out[name] = str(e)
for args in {commands!r}:
    cli.main(args, prog_name="stftblur", standalone_mode=False)
out["forbidden"] = [m for m in {forbidden!r} if importlib.util.find_spec(m) is not None]
out["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r})
print("PROBE " + json.dumps(out))
"""


def test_the_core_install_works_from_any_folder_without_the_extras(wheel: Tuple[Path, str], tmp_path: Path) -> None:
    whl, _ = wheel
    name, version = whl.name.split("-")[:2]
    meta = Parser().parsestr(zipfile.ZipFile(whl).read(f"{name}-{version}.dist-info/METADATA").decode())
    core = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    dists = _core_closure(core)
    assert not {canonicalize_name(m) for m in ("scipy", "scikit-image", "matplotlib", "kornia", "timm", "torchvision")} & set(dists)

    venv = tmp_path / "venv"
    cache = tmp_path / "cache"  # a fresh cache: the compiled kernels are built from the wheel's C sources
    env = _clean_env(STFTBLUR_CACHE=str(cache))
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
    write_idx_dataset(elsewhere / "data", n_train=50, n_test=6)  # one training step of batch 50, 6 test images
    commands = [
        ["sample", "--checkpoint", "ours", "--n", "12", "--out", "s", "--threads", "1"],
        ["eval", "--images", "s/samples", "--json", "eval.json"],
        ["train-vae", "--out", "run", "--data-dir", "data", "--loss", "ours", "--epochs", "1", "--n-export", "4",
         "--n-samples", "2", "--device", "cpu", "--threads", "1", "--no-progress"],
        ["eval-vae", "--checkpoint", "run", "--data-dir", "data", "--n-samples", "4", "--json", "vae.json"],
        ["compare", "s/samples", "run/recon", "--reference-set", "run/reference", "--json", "compare.json"],
    ]
    driver = DRIVER.format(probe=inspect.getsource(probe_numbers), commands=commands, forbidden=FORBIDDEN)
    r = _run([str(py), "-c", driver], cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    got = json.loads(r.stdout.split("PROBE ")[-1])
    assert Path(got["file"]).resolve().is_relative_to(site.resolve()), got["file"]  # the installed copy, not the checkout
    assert got["forbidden"] == [] and got["loaded"] == []
    assert got["blur_effect"] == "blur_effect needs scikit-image: pip install 'stftblur[skimage]'"
    assert got["viz"] == "stftblur.viz.image_panels needs matplotlib: pip install 'stftblur[plot]'"
    # The installed wheel computes what the checkout computes.
    want = probe_numbers()
    for dtype, values in want.items():
        for key, value in values.items():  # type: ignore[attr-defined]
            assert got["numbers"][dtype][key] == pytest.approx(value, rel=1e-5 if "32" in dtype else 1e-9), (dtype, key)
    if shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc") or shutil.which("clang"):
        c_files = list((ROOT / "stftblur" / "csrc").glob("*.c"))
        assert len(list(cache.glob("*.so"))) >= len(c_files), sorted(p.name for p in cache.iterdir())
    # What the commands wrote.
    assert json.loads((elsewhere / "s" / "sample.json").read_text())["checkpoint"] == "ours"
    assert len(list((elsewhere / "s" / "samples").glob("*.png"))) == 12
    report = json.loads((elsewhere / "eval.json").read_text())
    assert report["metrics"] == ["lpc_si"] and report["summary"]["lpc_si"]["count"] == 12
    assert (elsewhere / "run" / "model.safetensors").is_file() and (elsewhere / "run" / "samples.png").is_file()
    assert json.loads((elsewhere / "vae.json").read_text())["test_images"] == 6
    assert len(json.loads((elsewhere / "compare.json").read_text())["rows"]) == 2

    # The console script: the shipped models from any folder; a figure says it needs the plot extra.
    stftblur_cmd = str(venv / "bin" / "stftblur")
    r = _run([stftblur_cmd, "models"], cwd=elsewhere, env=env)
    assert r.returncode == 0, r.stderr
    shipped = sorted(d.name for d in (ROOT / "models").iterdir() if (d / "model.safetensors").is_file())
    assert str(site / "stftblur" / "_shipped") in r.stdout
    assert all(f"\n{name} " in r.stdout for name in shipped), r.stdout
    r = _run([stftblur_cmd, "eval", "--images", "s/samples", "--plot", "p.png"], cwd=elsewhere, env=env)
    assert r.returncode == 2 and not (elsewhere / "p.png").exists()
    assert r.stderr.strip() == "Error: --plot needs matplotlib: pip install 'stftblur[plot]'", r.stderr
