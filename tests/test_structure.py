"""The library's structure: one LocalPhaseConfig, the metric registry, the run directory, deprecated
names, __all__ everywhere and one exception base (issue 13)."""

from __future__ import annotations

import warnings

import pytest
import torch

from stftblur import FourierLoss, LocalPhaseConfig, LocalPhaseLoss, fourier_loss, local_phase_loss
from stftblur.losses import PRESETS


# --------------------------------------------------------------------------- LocalPhaseConfig


def test_config_is_frozen_and_validated_once() -> None:
    cfg = LocalPhaseConfig()
    with pytest.raises(AttributeError):
        cfg.stride = 8  # type: ignore[misc]
    for bad, message in (
        (dict(stride=0), "stride must be a positive int"),
        (dict(window_size=2.5), "window_size must be a positive int"),
        (dict(phase_weight=-1.0), "phase_weight must be a finite number >= 0"),
        (dict(eps=0.0), "eps must be a finite number > 0"),
        (dict(window="hamming"), "window must be one of"),
        (dict(transform="3d"), "transform must be one of"),
        (dict(normalized="yes"), "normalized must be a bool"),
    ):
        with pytest.raises((ValueError, TypeError), match=message):
            LocalPhaseConfig(**bad)
        with pytest.raises((ValueError, TypeError), match=message):
            cfg.replace(**bad)
    with pytest.raises(TypeError, match="unknown local-phase options"):
        cfg.replace(window_sise=8)


def test_one_spelling_for_no_window() -> None:
    assert LocalPhaseConfig(window="none").window is None
    assert LocalPhaseConfig(window=None) == LocalPhaseConfig(window="none")
    with pytest.warns(DeprecationWarning, match="boxcar"):
        assert LocalPhaseConfig(window="boxcar").window is None
    assert LocalPhaseConfig.CHOICES["window"] == ("hann", "sqrt-hann", "none")


def test_presets_and_equality() -> None:
    code = LocalPhaseConfig.from_preset("paper-code")
    assert (code.transform, code.window, code.phase_offset, code.aggregate) == ("rows", None, 1e-6, "sum")
    for name, changes in PRESETS.items():
        cfg = LocalPhaseConfig.from_preset(name)
        assert all(getattr(cfg, k) == v for k, v in changes.items())
    assert LocalPhaseConfig.from_preset("default") == LocalPhaseConfig()
    assert LocalPhaseConfig(**code.to_dict()) == code and hash(LocalPhaseConfig(**code.to_dict())) == hash(code)
    w = torch.ones(16, 9)
    assert LocalPhaseConfig(frequency_weighting=w) == LocalPhaseConfig(frequency_weighting=w.clone())
    assert LocalPhaseConfig(frequency_weighting=w) != LocalPhaseConfig(frequency_weighting=2 * w)
    with pytest.raises(ValueError, match="preset must be one of"):
        LocalPhaseConfig.from_preset("paper")


def test_function_module_and_config_agree() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 1, 28, 28, generator=g), torch.rand(2, 1, 28, 28, generator=g)
    cfg = LocalPhaseConfig.from_preset("paper-text", window_size=8)
    by_config = local_phase_loss(x, y, config=cfg, reduction="none")
    by_options = local_phase_loss(x, y, reduction="none", **cfg.to_dict())
    by_module = LocalPhaseLoss(config=cfg, reduction="none")(x, y)
    by_preset = LocalPhaseLoss.from_preset("paper-text", window_size=8, reduction="none")(x, y)
    for other in (by_options, by_module, by_preset):
        assert torch.equal(by_config, other)
    # An option given beside a config replaces the config's value.
    assert torch.equal(local_phase_loss(x, y, config=cfg, stride=8), local_phase_loss(x, y, config=cfg.replace(stride=8)))
    loss = LocalPhaseLoss(config=cfg)
    assert loss.options is cfg and loss.window_size == 8 and LocalPhaseLoss(**loss.config).options == cfg


def test_positional_options_still_work_with_a_warning() -> None:
    x, y = torch.rand(2, 1, 20, 20), torch.rand(2, 1, 20, 20)
    with pytest.warns(DeprecationWarning, match="by position is deprecated"):
        old = local_phase_loss(x, y, 8, 2, 3.0, 1.0, "linear", "wrapped", "hann", "none")
    assert torch.equal(old, local_phase_loss(x, y, window_size=8, stride=2, reduction="none"))
    with pytest.warns(DeprecationWarning):
        module = LocalPhaseLoss(8, 2)
    assert module.options == LocalPhaseConfig(window_size=8, stride=2)
    with pytest.warns(DeprecationWarning):
        assert torch.equal(fourier_loss(x, y, 2.0), fourier_loss(x, y, phase_weight=2.0))
    with pytest.raises(TypeError, match="multiple values"):
        local_phase_loss(x, y, 8, window_size=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        local_phase_loss(x, y, window_size=8)  # the keyword form does not warn


def test_fourier_loss_is_a_local_phase_variant() -> None:
    x, y = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    f = FourierLoss(amplitude_weight=0.5)
    assert isinstance(f, LocalPhaseLoss) and f.options == LocalPhaseConfig.fourier(amplitude_weight=0.5)
    expected = local_phase_loss(x, y, window_size=None, window=None, phase_weight=1.0, amplitude_weight=0.5)
    assert torch.equal(f(x, y), expected) and torch.equal(fourier_loss(x, y, amplitude_weight=0.5), expected)
    assert FourierLoss(**f.config).options == f.options
    with pytest.raises(TypeError, match="cannot be set"):
        FourierLoss(window_size=8)
    with pytest.raises(ValueError, match="one window over the whole image"):
        fourier_loss(x, y, config=LocalPhaseConfig())
