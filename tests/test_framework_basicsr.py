"""stftblur.integrations.basicsr against BasicSR 1.4.2's own builders and training pipeline."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("basicsr", reason="needs the basicsr extra: pip install 'stftblur[basicsr]'")

import stftblur.integrations.basicsr as plugin  # noqa: E402
from basicsr.losses import build_loss  # noqa: E402
from basicsr.metrics import calculate_metric  # noqa: E402
from basicsr.utils.options import yaml_load  # noqa: E402
from basicsr.utils.registry import LOSS_REGISTRY, METRIC_REGISTRY  # noqa: E402

from stftblur import LocalPhaseConfig, local_phase_loss  # noqa: E402
from stftblur.errors import MissingExtraError  # noqa: E402
from stftblur.metrics import lpc_si  # noqa: E402

from .conftest import ROOT  # noqa: E402

EXAMPLE = ROOT / "examples" / "basicsr"
OPTIONS = EXAMPLE / "train_local_phase_x2.yml"


# --------------------------------------------------------------------------- the loss


def test_example_yaml_builds_the_loss_with_build_loss() -> None:
    opt = yaml_load(str(OPTIONS))
    loss = build_loss(opt["train"]["local_phase_opt"])
    assert type(loss) is plugin.LocalPhaseLoss and LOSS_REGISTRY.get("LocalPhaseLoss") is plugin.LocalPhaseLoss
    assert loss.loss_weight == 0.01 and loss.reduction == "mean"
    assert loss.options == LocalPhaseConfig()  # the YAML spells out the defaults
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loss(x, y), 0.01 * local_phase_loss(x, y), rtol=1e-6, atol=0)


def test_every_option_and_preset_from_yaml(tmp_path: Path) -> None:
    text = """
loss:
  type: LocalPhaseLoss
  loss_weight: 2
  reduction: sum
  preset: paper-text
  window_size: 8
  stride: 2
  phase_weight: 1.5
  amplitude_weight: 0.5
  frequency_weighting: [[1.0, 0.5, 0.25, 0.125, 0.0]]
  phase_distance: cosine
  window: none
  aggregate: mean
  normalized: true
  transform: 2d
  phase_offset: 0
  eps: 1e-5
"""
    path = tmp_path / "loss.yml"
    path.write_text(text)
    opt = yaml_load(str(path))["loss"]
    assert isinstance(opt["eps"], str)  # PyYAML reads 1e-5 (no dot) as text; the loss reads it as a number
    loss = build_loss(opt)
    expected = LocalPhaseConfig.from_preset(
        "paper-text", window_size=8, stride=2, phase_weight=1.5, amplitude_weight=0.5,
        frequency_weighting=torch.tensor([[1.0, 0.5, 0.25, 0.125, 0.0]]), phase_distance="cosine", window=None,
        aggregate="mean", normalized=True, transform="2d", phase_offset=0.0, eps=1e-5,
    )
    assert loss.options == expected and loss.preset == "paper-text"
    # every option of LocalPhaseConfig was set above, so none can be missing from the adapter
    assert set(LocalPhaseConfig.field_names()) <= set(opt)
    x, y = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
    torch.testing.assert_close(loss(x, y), 2 * local_phase_loss(x, y, config=expected, reduction="sum"))


@pytest.mark.parametrize(
    "opt,match",
    [
        ({"windw_size": 8}, r"unknown option\(s\) \['windw_size'\]"),
        ({"preset": "paper"}, "preset must be one of"),
        ({"phase_distance": "unwrapped"}, "phase_distance must be one of"),
        ({"reduction": "avg"}, "reduction must be one of"),
        ({"eps": "small"}, "eps must be a number"),
        ({"loss_weight": "heavy"}, "loss_weight must be a number"),
    ],
)
def test_a_wrong_option_names_itself(opt: dict, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        build_loss({"type": "LocalPhaseLoss", **opt})


def test_weight_convention() -> None:
    loss = build_loss({"type": "LocalPhaseLoss", "window_size": 8, "reduction": "mean"})
    x, y = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
    per_image = local_phase_loss(x, y, window_size=8, reduction="none")
    w = torch.tensor([1.0, 0.0, 3.0])
    for shape in [(3,), (3, 1), (3, 1, 1, 1)]:
        torch.testing.assert_close(loss(x, y, weight=w.reshape(shape)), (w * per_image).sum() / w.sum())
    loss.reduction = "none"
    torch.testing.assert_close(loss(x, y, weight=w), w * per_image)
    torch.testing.assert_close(loss(x, y, None, unused_kwarg=1), per_image)  # **kwargs accepted, as BasicSR's losses
    with pytest.raises(ValueError, match="one weight per image.*per-pixel weight map"):
        loss(x, y, weight=torch.ones(3, 1, 16, 16))


# --------------------------------------------------------------------------- the metric


def _rgb_lpc_si(bgr: np.ndarray, crop: int = 0) -> float:
    x = torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1)[None].double()
    if crop:
        x = x[..., crop:-crop, crop:-crop]
    return float(lpc_si(x, data_range=255.0)[0])


def test_metric_equals_lpc_si_of_the_rgb_image() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)
    img[:, :, 0] = 0  # blue channel empty: BGR read as RGB would give another value
    got = calculate_metric({"img": img, "img2": img}, {"type": "calculate_lpcsi", "crop_border": 3, "better": "higher"})
    assert METRIC_REGISTRY.get("calculate_lpcsi") is plugin.calculate_lpcsi
    assert got == _rgb_lpc_si(img, 3)
    swapped = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double()[..., 3:-3, 3:-3]
    assert abs(got - float(lpc_si(swapped, data_range=255.0)[0])) > 1e-4
    # CHW and gray layouts; LPC-SI options pass through
    assert plugin.calculate_lpcsi(img.transpose(2, 0, 1), 3, input_order="CHW") == got
    gray = img[..., 1]
    want = float(lpc_si(torch.from_numpy(gray.copy())[None, None].double(), data_range=255.0, border=2)[0])
    assert plugin.calculate_lpcsi(gray, 0, border=2) == want
    assert plugin.calculate_lpcsi(gray[..., None], 0, border=2) == want


def test_metric_y_channel_is_basicsr_y() -> None:
    from basicsr.metrics.metric_util import to_y_channel

    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    y = torch.from_numpy(to_y_channel(img)).permute(2, 0, 1)[None].double()[..., 2:-2, 2:-2]
    assert plugin.calculate_lpcsi(img, 2, test_y_channel=True) == float(lpc_si(y, data_range=255.0)[0])


@pytest.mark.parametrize(
    "img,kwargs,error,match",
    [
        (np.zeros((32, 32, 3), np.float32), {}, TypeError, "uint8 image"),
        (torch.zeros(32, 32, 3, dtype=torch.uint8), {}, TypeError, "must be a numpy array"),
        (np.zeros((3, 32, 32), np.uint8), {}, ValueError, r"shape \(H, W, C\)"),
        (np.zeros((32, 32, 3), np.uint8), {"input_order": "CWH"}, ValueError, "input_order"),
        (np.zeros((32, 32, 3), np.uint8), {"crop_border": 16}, ValueError, "crop_border=16"),
        (np.zeros((32, 32, 3), np.uint8), {"scalez": [1, 2]}, TypeError, r"\['scalez'\]"),
        (np.zeros((32, 32, 3), np.uint8), {"C": -1}, ValueError, "C must be"),
    ],
)
def test_metric_rejects_bad_input(img, kwargs, error, match) -> None:
    kwargs = {"crop_border": 0, **kwargs}
    with pytest.raises(error, match=match):
        plugin.calculate_lpcsi(img, **kwargs)


# --------------------------------------------------------------------------- registration


def test_import_twice_and_reload_are_harmless() -> None:
    import stftblur.integrations.basicsr  # noqa: F401  (a second import is a no-op)

    reloaded = importlib.reload(plugin)
    assert LOSS_REGISTRY.get("LocalPhaseLoss") is reloaded.LocalPhaseLoss
    assert METRIC_REGISTRY.get("calculate_lpcsi") is reloaded.calculate_lpcsi
    assert type(build_loss({"type": "LocalPhaseLoss"})) is reloaded.LocalPhaseLoss


def test_another_packages_entry_is_never_replaced() -> None:
    class LocalPhaseLoss(torch.nn.Module):  # someone else's loss of the same name
        pass

    ours = LOSS_REGISTRY._obj_map["LocalPhaseLoss"]
    LOSS_REGISTRY._obj_map["LocalPhaseLoss"] = LocalPhaseLoss
    try:
        with pytest.raises(RuntimeError, match=r"already holds an entry named 'LocalPhaseLoss' from .*test_framework_basicsr"):
            importlib.reload(plugin)
        assert LOSS_REGISTRY._obj_map["LocalPhaseLoss"] is LocalPhaseLoss
    finally:
        LOSS_REGISTRY._obj_map["LocalPhaseLoss"] = ours
        importlib.reload(plugin)


def test_without_basicsr_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "basicsr" or m.startswith("basicsr.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setitem(sys.modules, "basicsr", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "stftblur.integrations.basicsr")
    with pytest.raises(MissingExtraError, match=r"pip install 'stftblur\[basicsr\]'"):
        importlib.import_module("stftblur.integrations.basicsr")


def test_import_stftblur_imports_no_framework() -> None:
    code = (
        "import sys, stftblur, stftblur.integrations, stftblur.metrics, stftblur.losses, stftblur.training\n"
        "loaded = sorted(m for m in ('basicsr', 'mmengine', 'torchmetrics', 'lightning', 'pytorch_lightning') "
        "if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


# --------------------------------------------------------------------------- BasicSR's own pipeline


def _write_pairs(root: Path, n: int, size: int, seed: int) -> None:
    import cv2

    rng = np.random.default_rng(seed)
    (root / "GT").mkdir(parents=True)
    (root / "LQ").mkdir()
    for i in range(n):
        gt = np.zeros((size, size, 3), np.uint8)
        for _ in range(4):  # a few sharp-edged rectangles of random colours
            y0, x0 = rng.integers(0, size - 4, 2)
            h, w = rng.integers(3, size // 2, 2)
            gt[y0 : y0 + h, x0 : x0 + w] = rng.integers(0, 256, 3)
        cv2.imwrite(str(root / "GT" / f"{i:03d}.png"), gt)
        cv2.imwrite(str(root / "LQ" / f"{i:03d}.png"), cv2.resize(gt, (size // 2, size // 2), interpolation=cv2.INTER_AREA))


def test_basicsr_train_pipeline_with_the_loss_and_the_metric(tmp_path: Path) -> None:
    """The example's train.py and options, run by BasicSR's train_pipeline for 4 iterations on
    the CPU (tiny MSRResNet, generated 24x24 pairs); then BasicSR's log is read and its last
    LPC-SI checked against lpc_si of the saved network's outputs."""
    import yaml
    from basicsr.utils.options import ordered_yaml

    _write_pairs(tmp_path / "train", 4, 24, seed=0)
    _write_pairs(tmp_path / "val", 2, 24, seed=1)
    opt = yaml_load(str(OPTIONS))
    opt["name"] = "tiny"
    opt["num_gpu"] = 0
    for phase in ("train", "val"):
        d = opt["datasets"][phase]
        d["dataroot_gt"], d["dataroot_lq"] = str(tmp_path / phase / "GT"), str(tmp_path / phase / "LQ")
    opt["datasets"]["train"].update(gt_size=16, num_worker_per_gpu=0, batch_size_per_gpu=2)
    opt["network_g"].update(num_feat=4, num_block=1)
    opt["train"]["total_iter"] = 4
    opt["train"]["scheduler"]["periods"] = [4]
    opt["train"]["local_phase_opt"]["window_size"] = 8
    opt["val"]["val_freq"] = 2
    opt["logger"].update(print_freq=1, save_checkpoint_freq=1000)
    (tmp_path / "options.yml").write_text(yaml.dump(opt, Dumper=ordered_yaml()[1]))

    run = subprocess.run(
        [sys.executable, str(EXAMPLE / "train.py"), "-opt", "options.yml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    logs = list((tmp_path / "experiments" / "tiny").glob("train_tiny_*.log"))
    assert len(logs) == 1, sorted(p.name for p in (tmp_path / "experiments").rglob("*"))
    log = logs[0].read_text()
    assert "Loss [LocalPhaseLoss] is created." in log and "Loss [L1Loss] is created." in log
    assert len(re.findall(r"iter:\s+\d+.*l_pix: \S+ l_local_phase: \S+", log)) == 4
    lpcsi = [float(v) for v in re.findall(r"# lpcsi: ([0-9.]+)", log)]
    assert len(lpcsi) == 3 and "# psnr:" in log  # at iterations 2 and 4, and after training
    assert "End of training" in log

    # BasicSR's validation of the last network, recomputed: LQ -> net -> tensor2img -> lpc_si of RGB
    from basicsr.archs import build_network
    from basicsr.utils import img2tensor, tensor2img
    import cv2

    net = build_network(dict(opt["network_g"]))
    state = torch.load(tmp_path / "experiments" / "tiny" / "models" / "net_g_latest.pth", weights_only=True)
    net.load_state_dict(state["params"])
    net.eval()
    values = []
    for path in sorted((tmp_path / "val" / "LQ").glob("*.png")):
        lq = img2tensor(cv2.imread(str(path)).astype(np.float32) / 255.0, bgr2rgb=True, float32=True)
        with torch.no_grad():
            sr = tensor2img([net(lq[None])])
        values.append(_rgb_lpc_si(sr, crop=2))
    assert lpcsi[-1] == pytest.approx(float(np.mean(values)), abs=6e-5)  # the log prints 4 decimals


# --------------------------------------------------------------------------- docs/frameworks.md


def test_docs_snippets_are_excerpts_of_tested_files() -> None:
    """Every code block of docs/frameworks.md that starts with "# from <path>" holds only lines
    of that file (and "..." for what is left out)."""
    text = (ROOT / "docs" / "frameworks.md").read_text()
    blocks = re.findall(r"```\w*\n# from (\S+)\n(.*?)```", text, flags=re.S)
    assert {path for path, _ in blocks} == {
        "examples/basicsr/train.py", "examples/basicsr/train_local_phase_x2.yml",
        "tests/test_framework_mmengine.py", "examples/lightning/vae.py",
    }
    for path, body in blocks:
        lines = set((ROOT / path).read_text().splitlines())
        for line in body.splitlines():
            if line.strip() not in ("", "..."):
                assert line in lines, (path, line)
