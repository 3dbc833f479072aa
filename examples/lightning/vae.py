"""The paper's MNIST beta-VAE as a LightningModule, with BlurMonitor watching its prior samples.

    python examples/lightning/vae.py [--steps 600] [--steps-per-epoch 100] [--batch 50] [--device auto] [--data-dir DIR]

The model (``stftblur.models.create_vae("mnist-vae")``), the objective (``VAEObjective``: beta KL
plus the paper's reconstruction, ``--loss ours`` by default: SSIM and the local-phase loss with
the paper-code preset) and the optimiser (Adam with the paper's cyclical learning rate,
``make_optimizer``) are the library's, as ``stftblur train-vae`` uses them; Lightning runs the
loop. Every ``--steps-per-epoch`` steps is one "epoch": at its end ``BlurMonitor`` decodes
``--samples`` prior codes (the same codes every time, so the grids show one set of samples
improving), logs ``blur/lpc_si`` and ``blur/spectral_deficit_db`` against ``--real-images`` test
images, writes a labelled grid to ``<out>/lightning_logs/version_N/blur_monitor/`` and
``ModelCheckpoint`` keeps the checkpoint with the sharpest samples. The defaults are 600 steps
(a training step takes about 22 ms on two idle CPU threads, docs/benchmarks.md; loading MNIST,
Lightning and the monitor add to that): a demonstration of the plumbing, not a trained model (``stftblur
train-vae`` trains the paper's 50 epochs of 1,200 steps).

MNIST is read from ``--data-dir`` or the places ``stftblur.data.find_dataset`` looks
(``STFTBLUR_DATA``, ...); nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from stftblur.data import load_dataset
from stftblur.integrations.lightning import BlurMonitor
from stftblur.models import create_vae
from stftblur.training import ObjectiveConfig, TrainConfig, VAEObjective, make_optimizer


class LitVAE(LightningModule):
    """The paper's beta-VAE and its objective; ``sample(n)`` decodes ``n`` fixed prior codes."""

    def __init__(self, loss: str = "ours", beta: float = 0.005) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.vae = create_vae("mnist-vae")
        self.objective = VAEObjective(ObjectiveConfig(loss, beta=beta))

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        x = batch[0]
        out = self.vae(x)
        loss, terms = self.objective(out.recon, x, out.mean, out.logvar)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        optimizer, schedule = make_optimizer(self.vae, TrainConfig())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """Raw decoder outputs of ``n`` prior codes drawn from a generator seeded with ``seed``."""
        return self.vae.sample(n, generator=torch.Generator(self.device).manual_seed(seed))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600, help="training steps in all")
    p.add_argument("--steps-per-epoch", type=int, default=100, help="steps between two BlurMonitor runs")
    p.add_argument("--batch", type=int, default=50, help="images per step")
    p.add_argument("--loss", default="ours", help="the VAE objective's loss (stftblur train-vae --loss)")
    p.add_argument("--beta", type=float, default=0.005)
    p.add_argument("--samples", type=int, default=64, help="prior samples judged and shown at each run")
    p.add_argument("--real-images", type=int, default=1000, help="test images the spectral deficit compares with")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("runs/lightning-vae"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="Lightning's accelerator")
    args = p.parse_args(argv)

    seed_everything(args.seed, verbose=False)
    train = load_dataset("mnist", "train", data_dir=args.data_dir, download=False)
    test = load_dataset("mnist", "test", data_dir=args.data_dir, download=False)
    loader = DataLoader(TensorDataset(train.images), batch_size=args.batch, shuffle=True)

    monitor = BlurMonitor(lambda module: module.sample(args.samples), real=test.images[: args.real_images])
    checkpoint = ModelCheckpoint(monitor="blur/lpc_si", mode="max", filename="sharpest-{epoch}-{step}")
    trainer = Trainer(
        default_root_dir=args.out,
        logger=CSVLogger(args.out),
        callbacks=[monitor, checkpoint],
        max_steps=args.steps,
        max_epochs=-1,
        limit_train_batches=args.steps_per_epoch,
        log_every_n_steps=min(50, args.steps_per_epoch),
        accelerator=args.device,
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(LitVAE(args.loss, args.beta), loader)

    values = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("blur/")}
    for name, value in sorted(values.items()):
        print(f"{name} {value:.4f}")
    print(f"sample grids: {Path(trainer.log_dir) / 'blur_monitor'}")
    print(f"sharpest checkpoint: {checkpoint.best_model_path} (blur/lpc_si {float(checkpoint.best_model_score):.4f})")
    return values


if __name__ == "__main__":
    main()
