"""stftblur.integrations.lightning: BlurMonitor in a real Lightning Trainer (CPU), and the VAE example."""

from __future__ import annotations

import csv
import importlib
import sys
from pathlib import Path
from typing import Optional

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pytest.importorskip("lightning", reason="needs the lightning extra: pip install 'stftblur[lightning]'")
pytest.importorskip("matplotlib", reason="the sample grid needs matplotlib: pip install 'stftblur[plot]'")

from lightning.pytorch import LightningModule, Trainer  # noqa: E402
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from stftblur.errors import MissingExtraError  # noqa: E402
from stftblur.integrations.lightning import BlurMonitor  # noqa: E402
from stftblur.metrics import lpc_si, spectral_deficit  # noqa: E402

from ._vae_support import write_idx_dataset  # noqa: E402
from .conftest import ROOT  # noqa: E402


def _target() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x = torch.zeros(4, 1, 32, 32)
    for i in range(4):
        y0, x0 = torch.randint(2, 14, (2,), generator=g).tolist()
        x[i, :, y0 : y0 + 14, x0 : x0 + 16] = 1.0
    return x


class Canvas(LightningModule):
    """A "generator" whose samples are a learnt image batch, pulled towards sharp squares by a noisy L1."""

    def __init__(self, validate: bool = False) -> None:
        super().__init__()
        self.register_buffer("target", _target())
        self.canvas = nn.Parameter(torch.full_like(self.target, 0.5))
        self.validate = validate

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        noise = 0.05 * torch.randn_like(self.canvas)  # uses the global random stream
        return (self.canvas + noise - self.target).abs().mean()

    def validation_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        self.log("val_l1", (self.canvas - self.target).abs().mean())

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.parameters(), lr=20.0)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.zeros(8, 1)), batch_size=2)

    def val_dataloader(self) -> Optional[DataLoader]:  # type: ignore[override]
        return DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=2) if self.validate else []


def _samples(module: Canvas) -> torch.Tensor:
    assert not module.training and not torch.is_grad_enabled()
    torch.rand(16)  # consumes random numbers: the monitor must restore the state afterwards
    return module.canvas.clamp(0, 1)


def _trainer(tmp_path: Path, callbacks: list, **kwargs) -> Trainer:
    return Trainer(
        default_root_dir=tmp_path, logger=CSVLogger(tmp_path, name="run"), callbacks=callbacks, accelerator="cpu",
        devices=1, max_epochs=2, limit_train_batches=2, log_every_n_steps=1, enable_progress_bar=False,
        enable_model_summary=False, **kwargs,
    )


def _logged(trainer: Trainer, name: str) -> list:
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        return [(int(row["epoch"]), float(row[name])) for row in csv.DictReader(f) if row.get(name)]


def test_monitor_logs_for_checkpoint_and_early_stopping(tmp_path: Path) -> None:
    real = _target()
    monitor = BlurMonitor(_samples, real=real)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="blur/lpc_si", mode="max", save_top_k=1)
    stopping = EarlyStopping(monitor="blur/spectral_deficit_db", mode="min", patience=5)
    torch.manual_seed(0)
    module = Canvas()
    trainer = _trainer(tmp_path, [monitor, stopping, checkpoint])
    trainer.fit(module)

    metrics = trainer.callback_metrics
    assert {"blur/lpc_si", "blur/spectral_deficit_db"} <= set(metrics)
    # the last values are those of the final samples
    final = module.canvas.detach().clamp(0, 1)
    assert metrics["blur/lpc_si"].item() == pytest.approx(float(lpc_si(final).double().mean()), rel=1e-6)
    assert monitor.last["blur/spectral_deficit_db"] == spectral_deficit(final, real).deficit_db
    logged = _logged(trainer, "blur/lpc_si")
    assert [e for e, _ in logged] == [0, 1]
    assert checkpoint.best_model_score.item() == pytest.approx(max(v for _, v in logged), rel=1e-6)
    assert stopping.best_score.item() == pytest.approx(min(v for _, v in _logged(trainer, "blur/spectral_deficit_db")), rel=1e-6)
    grids = sorted(p.name for p in (Path(trainer.log_dir) / "blur_monitor").glob("*.png"))
    assert grids == ["epoch=0000-step=000002.png", "epoch=0001-step=000004.png"]

    # sampling neither changed the training's random numbers nor left the module in eval mode
    torch.manual_seed(0)
    plain = Canvas()
    _trainer(tmp_path / "plain", []).fit(plain)
    assert torch.equal(plain.canvas, module.canvas) and module.training


def test_monitor_runs_at_validation_end_every_n_epochs(tmp_path: Path) -> None:
    monitor = BlurMonitor(_samples, every_n_epochs=2, save_grid=True)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="blur/lpc_si", mode="max", every_n_epochs=2)
    trainer = _trainer(tmp_path, [monitor, checkpoint], num_sanity_val_steps=1)
    module = Canvas(validate=True)
    seen = []
    original = monitor._run
    monitor._run = lambda tr, m: (seen.append((tr.current_epoch, tr.state.stage)), original(tr, m))[1]
    trainer.fit(module)
    assert [(e, getattr(s, "value", s)) for e, s in seen] == [(1, "validate")]  # not at the sanity check nor epoch 0
    assert "blur/lpc_si" in trainer.callback_metrics and "blur/spectral_deficit_db" not in trainer.callback_metrics
    assert checkpoint.best_model_score is not None
    assert len(list((Path(trainer.log_dir) / "blur_monitor").glob("*.png"))) == 1


def test_bad_samples_and_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="sample_fn must be callable"):
        BlurMonitor("samples")
    with pytest.raises(ValueError, match="every_n_epochs"):
        BlurMonitor(_samples, every_n_epochs=0)
    with pytest.raises(ValueError, match="band"):
        BlurMonitor(_samples, band=(0.4, 0.1))
    with pytest.raises(TypeError, match="real must be"):
        BlurMonitor(_samples, real="images/")
    monitor = BlurMonitor(lambda m: torch.rand(4, 32, 32), save_grid=False)
    with pytest.raises(ValueError, match=r"sample_fn must return a \(B, C, H, W\) tensor"):
        Trainer(default_root_dir=tmp_path, callbacks=[monitor], max_epochs=1, limit_train_batches=1, logger=False,
                enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False).fit(Canvas())


def test_without_lightning_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "lightning" or m.startswith("lightning.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.delitem(sys.modules, "stftblur.integrations.lightning")
    with pytest.raises(MissingExtraError, match=r"pip install 'stftblur\[lightning\]'"):
        importlib.import_module("stftblur.integrations.lightning")


def test_lightning_vae_example_runs(tmp_path: Path, capsys: pytest.CaptureFixture,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/lightning/vae.py (its main, in this process) on a 6-image IDX set for 2 steps."""
    import importlib.util

    monkeypatch.setenv("PL_GLOBAL_SEED", "0")  # seed_everything sets it; restored (unset) afterwards

    write_idx_dataset(tmp_path / "data", n_train=6, n_test=4)
    spec = importlib.util.spec_from_file_location("lightning_vae_example", ROOT / "examples" / "lightning" / "vae.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    values = example.main(["--data-dir", str(tmp_path / "data"), "--steps", "2", "--steps-per-epoch", "2",
                           "--batch", "3", "--device", "cpu", "--samples", "4", "--real-images", "4", "--out", str(tmp_path / "out")])
    assert set(values) == {"blur/lpc_si", "blur/spectral_deficit_db"}
    out = capsys.readouterr().out
    assert "blur/lpc_si" in out and "sharpest checkpoint" in out
    assert len(list((tmp_path / "out").rglob("blur_monitor/*.png"))) == 1
    assert len(list((tmp_path / "out").rglob("sharpest-*.ckpt"))) == 1
