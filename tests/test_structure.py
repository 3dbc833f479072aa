"""The library's structure: one LocalPhaseConfig, the metric registry, the run directory, no shims
for names that were never released, __all__ everywhere and one exception base (issues 13, 24)."""

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
    with pytest.raises(ValueError, match="window must be one of"):
        LocalPhaseConfig(window="boxcar")  # a spelling that was never released
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


def test_options_are_keyword_only() -> None:
    x, y = torch.rand(2, 1, 20, 20), torch.rand(2, 1, 20, 20)
    for call in (lambda: local_phase_loss(x, y, 8), lambda: LocalPhaseLoss(8, 2), lambda: fourier_loss(x, y, 2.0),
                 lambda: FourierLoss(2.0)):
        with pytest.raises(TypeError, match="positional argument"):
            call()
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


# --------------------------------------------------------------------------- run directory

import dataclasses  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from safetensors.torch import load_file  # noqa: E402

from ._vae_support import one_thread  # noqa: E402,F401 (fixture)
from .conftest import require_shared  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "data" / "resume_v0"


def _records(run: Path) -> list:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("complete_epoch", True)]


@pytest.mark.usefixtures("one_thread")
def test_a_run_written_before_the_restructure_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/data/resume_v0 was written by the code before the training loop was split
    (tests/data/make_resume_fixture.py): a run stopped at step 5 of 8, and the same run trained
    without interruption. Resuming the stopped run now must give the uninterrupted run's weights
    and records. Bit for bit holds only on the machine that wrote them (PyTorch's CPU FFT and
    reductions round differently on other CPUs: MKL on an AVX-512 AMD EPYC differs by ~1 ulp), so
    here they must agree to float32 rounding; bit-identical resume on one machine is
    test_vae_train.py::test_resume_after_sigkill_equals_uninterrupted."""
    from stftblur.training import load_run_config, train_vae

    written = json.loads((FIXTURE / "README.json").read_text())
    monkeypatch.setenv("STFTBLUR_DATA", str(require_shared("data", "mnist")))
    out = tmp_path / "run"
    shutil.copytree(FIXTURE / "stopped", out)
    config = dataclasses.replace(load_run_config(out), max_steps=None)

    result = train_vae(config, out, resume=True)
    assert result.resumed_from_step == 5 and result.step == 8
    # It started before the compiled kernels existed: continued on the pure-PyTorch path (a
    # setting of the run's objective, not of the process), which is recorded.
    assert json.loads((out / "config.json").read_text())["compiled_kernels"] is False
    if torch.__version__ != written["torch_version"]:
        pytest.skip(f"the fixture was written with torch {written['torch_version']}; float results may differ")
    expected, got = load_file(str(FIXTURE / "full" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert expected.keys() == got.keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-7, msg=k)
    got_records, expected_records = _records(out), _records(FIXTURE / "full")
    assert len(got_records) == len(expected_records)
    for got_r, expected_r in zip(got_records, expected_records):
        assert got_r.keys() == expected_r.keys()
        for key, value in expected_r.items():
            if isinstance(value, float):
                assert got_r[key] == pytest.approx(value, rel=1e-6), key
            else:
                assert got_r[key] == value, key
    full_summary = json.loads((FIXTURE / "full" / "summary.json").read_text())
    assert json.loads((out / "summary.json").read_text())["metrics"] == pytest.approx(full_summary["metrics"], rel=1e-6)


# --------------------------------------------------------------------------- modules, names, errors


def test_every_public_module_declares_all() -> None:
    import importlib
    import pkgutil

    import stftblur
    from stftblur.errors import MissingExtraError

    for info in pkgutil.walk_packages(stftblur.__path__, "stftblur."):
        if info.name == "stftblur.restoration":  # the benchmark leaves the library (evals/)
            continue
        try:
            module = importlib.import_module(info.name)
        except MissingExtraError:  # an integration whose framework is not installed
            assert info.name.startswith("stftblur.integrations."), info.name
            continue
        assert isinstance(getattr(module, "__all__", None), list), info.name
        for name in module.__all__:
            assert hasattr(module, name), (info.name, name)


@pytest.mark.parametrize("module", ["stftblur.evaluate", "stftblur.training.export", "stftblur.training.system",
                                    "stftblur._deprecated"])
def test_shims_of_unreleased_names_are_gone(module: str) -> None:
    import importlib

    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(module)


def test_unreleased_names_are_not_forwarded() -> None:
    import stftblur.training

    for name in ("save_grid", "to_uint8", "tune_allocator"):
        assert not hasattr(stftblur.training, name), name


def test_every_library_error_has_one_base() -> None:
    from stftblur.data import DatasetNotFoundError, IDXFormatError
    from stftblur.errors import StftblurError
    from stftblur.io import ImageReadError
    from stftblur.models import CheckpointError
    from stftblur.training import RunDirError

    for error, builtin in ((DatasetNotFoundError, FileNotFoundError), (IDXFormatError, ValueError),
                           (ImageReadError, ValueError), (CheckpointError, ValueError), (RunDirError, ValueError)):
        assert issubclass(error, StftblurError) and issubclass(error, builtin), error


def test_the_cli_reports_library_errors_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from stftblur_cli.main import cli

    result = CliRunner().invoke(cli, ["sample", "--checkpoint", str(tmp_path / "missing.safetensors"),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


# --------------------------------------------------------------------------- metric registry


def test_adding_a_metric_is_one_registry_entry(tmp_path: Path) -> None:
    """A registered metric is known to check_metrics, computed by the folder evaluation, and
    its settings are written to the report."""
    import numpy as np
    from PIL import Image

    from stftblur.evaluation import check_metrics, compute_metrics, evaluate_folder
    from stftblur.metrics import METRICS, Metric, register_metric
    from stftblur.metrics import _registry

    Image.fromarray(np.full((12, 12), 51, np.uint8)).save(tmp_path / "a.png")  # 51 / 255 = 0.2
    register_metric(Metric("mean_level", lambda x, ref: x.mean((1, 2, 3)), needs_reference=False,
                           settings={"over": "all pixels"}))
    try:
        assert "mean_level" in METRICS and check_metrics(["mean_level"], False) == ("mean_level",)
        report = evaluate_folder(tmp_path, metrics=["mean_level", "lpc_si"])
        assert report.results[0].values["mean_level"] == pytest.approx(0.2)
        assert report.settings["mean_level"] == {"over": "all pixels"}
        assert compute_metrics(torch.full((2, 1, 4, 4), 0.5), metrics=["mean_level"])["mean_level"].tolist() == [0.5, 0.5]
        with pytest.raises(ValueError, match="already registered"):
            register_metric(Metric("mean_level", lambda x, ref: x, False, {}))
    finally:
        _registry._REGISTRY.pop("mean_level")
    with pytest.raises(ValueError, match="metrics must be a non-empty selection"):
        check_metrics(["mean_level"], False)
