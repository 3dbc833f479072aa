"""stftblur.integrations.mmengine through mmengine's own Config.fromfile, registries and Evaluator."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmengine", reason="needs the mmengine extra: pip install 'stftblur[mmengine]'")

from mmengine.config import Config  # noqa: E402
from mmengine.evaluator import Evaluator  # noqa: E402
from mmengine.registry import METRICS, MODELS, Registry  # noqa: E402

from stftblur import LocalPhaseConfig, local_phase_loss  # noqa: E402
from stftblur.errors import MissingExtraError  # noqa: E402
from stftblur.metrics import lpc_si  # noqa: E402

CONFIG = """
custom_imports = dict(imports=['stftblur.integrations.mmengine'], allow_failed_imports=False)

pixel_loss = dict(type='LocalPhaseLoss', loss_weight=0.5, reduction='sum', preset='paper-text', window_size=8,
                  eps=1e-5)
val_evaluator = [dict(type='LPCSI', crop_border=2)]
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "config.py"
    path.write_text(CONFIG)
    return Config.fromfile(str(path))  # imports the plugin through custom_imports


def _rgb_lpc_si(bgr_chw: torch.Tensor, crop: int) -> float:
    x = bgr_chw.double().flip(0)[None]
    if crop:
        x = x[..., crop:-crop, crop:-crop]
    return float(lpc_si(x, data_range=255.0)[0])


def test_config_file_builds_the_loss(config: Config) -> None:
    loss = MODELS.build(config.pixel_loss)
    plugin = sys.modules["stftblur.integrations.mmengine"]
    assert type(loss) is plugin.LocalPhaseLoss
    expected = LocalPhaseConfig.from_preset("paper-text", window_size=8, eps=1e-5)
    assert loss.options == expected and loss.loss_weight == 0.5
    x, y = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    torch.testing.assert_close(loss(x, y), 0.5 * local_phase_loss(x, y, config=expected, reduction="sum"))


def test_an_mmagic_style_child_registry_finds_both(config: Config) -> None:
    # mmagic/registry.py: MODELS = Registry('model', parent=mmengine's MODELS, ...), and so for METRICS
    child_models = Registry("model", parent=MODELS, scope="mmagic_like")
    child_metrics = Registry("metric", parent=METRICS, scope="mmagic_like")
    plugin = sys.modules["stftblur.integrations.mmengine"]
    assert type(child_models.build(dict(type="LocalPhaseLoss"))) is plugin.LocalPhaseLoss
    assert type(child_metrics.build(dict(type="LPCSI"))) is plugin.LPCSI


def test_misspelt_option_in_a_config_names_it(config: Config) -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['windowsize'\]"):
        MODELS.build(dict(type="LocalPhaseLoss", windowsize=8))
    with pytest.raises(TypeError, match=r"\['scale'\]"):
        METRICS.build(dict(type="LPCSI", scale=[1, 2]))
    with pytest.raises(ValueError, match="channel_order"):
        METRICS.build(dict(type="LPCSI", channel_order="GBR"))


def test_metric_process_and_evaluate(config: Config) -> None:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 32, 40, generator=g) * 255 for _ in range(3)]
    images[1][0] = 0.0  # an empty blue plane: reading BGR as RGB would change the value
    video = torch.rand(2, 3, 32, 40, generator=g) * 255  # frames are averaged
    samples = [{"output": {"pred_img": img}, "gt_img": img} for img in images]
    samples.append({"output": {"pred_img": video.numpy()}})
    evaluator = Evaluator(config.val_evaluator)
    evaluator.process(samples[:2], data_batch=None)
    evaluator.process(samples[2:], data_batch=None)
    result = evaluator.evaluate(len(samples))
    per_sample = [_rgb_lpc_si(img, 2) for img in images]
    per_sample.append(sum(_rgb_lpc_si(f, 2) for f in video) / 2)
    assert result == {"LPCSI": pytest.approx(float(np.mean(per_sample)), rel=1e-12)}

    # mmagic's DataSample (a BaseDataElement) with a nested output element, as a model returns it
    from mmengine.structures import BaseDataElement

    element = METRICS.build(dict(type="LPCSI", crop_border=2))
    element.process(None, [BaseDataElement(output=BaseDataElement(pred_img=images[0]))])
    assert element.results == [{"LPCSI": per_sample[0]}]

    rgb = METRICS.build(dict(type="LPCSI", channel_order="RGB"))
    rgb.process(None, samples[1:2])
    want = float(lpc_si(images[1].double()[None], data_range=255.0)[0])
    assert rgb.evaluate(1) == {"LPCSI": want} and want != pytest.approx(_rgb_lpc_si(images[1], 0))


@pytest.mark.parametrize(
    "sample,error,match",
    [
        ({"pred_img": torch.zeros(3, 8, 8)}, KeyError, r"no output\['pred_img'\]"),
        ({"output": {"pred_img": torch.zeros(32, 32, 3)}}, ValueError, r"shape \(C, H, W\)"),
        ({"output": {"pred_img": "image.png"}}, TypeError, "numpy array or a torch.Tensor"),
    ],
)
def test_metric_rejects_bad_samples(config: Config, sample, error, match) -> None:
    metric = METRICS.build(dict(type="LPCSI"))
    with pytest.raises(error, match=match):
        metric.process(None, [sample])


def test_reload_is_harmless_and_foreign_entries_stay(config: Config) -> None:
    plugin = importlib.reload(sys.modules["stftblur.integrations.mmengine"])
    assert MODELS.get("LocalPhaseLoss") is plugin.LocalPhaseLoss and METRICS.get("LPCSI") is plugin.LPCSI

    class LPCSI:  # another package's metric of the same name
        pass

    METRICS.register_module(name="LPCSI", module=LPCSI, force=True)
    try:
        with pytest.raises(RuntimeError, match=r"already holds an entry named 'LPCSI' from .*test_framework_mmengine"):
            importlib.reload(plugin)
        assert METRICS.get("LPCSI") is LPCSI
    finally:
        METRICS.register_module(name="LPCSI", module=plugin.LPCSI, force=True)
        importlib.reload(plugin)


def test_without_mmengine_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "mmengine" or m.startswith("mmengine.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setitem(sys.modules, "mmengine", None)
    monkeypatch.delitem(sys.modules, "stftblur.integrations.mmengine", raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install 'stftblur\[mmengine\]'"):
        importlib.import_module("stftblur.integrations.mmengine")
