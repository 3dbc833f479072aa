"""Lightning adapter: ``BlurMonitor``, a callback that watches a generator's blur while it trains.

::

    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint
    from stftblur.integrations.lightning import BlurMonitor

    monitor = BlurMonitor(lambda module: module.sample(64), real=real_images, every_n_epochs=1)
    trainer = Trainer(callbacks=[monitor, ModelCheckpoint(monitor="blur/lpc_si", mode="max")])

Written against Lightning 2.x, ``lightning.pytorch`` (``pip install 'stftblur[lightning]'``); the
sample grid needs matplotlib (``stftblur[plot]``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

import torch

from stftblur._checks import check_positive_float, check_positive_int
from stftblur.integrations._common import require_framework

require_framework("lightning.pytorch", "lightning", "stftblur.integrations.lightning")

from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402

from stftblur.errors import require_extra  # noqa: E402
from stftblur.metrics import RadialSpectrum, lpc_si, radial_power_spectrum, spectral_deficit  # noqa: E402
from stftblur.metrics.spectral import DEFAULT_BAND, RadialPowerSpectrum, _check_band  # noqa: E402

__all__ = ["BlurMonitor"]

SampleFn = Callable[[LightningModule], torch.Tensor]


class BlurMonitor(Callback):
    """Log the blur of a generative model's samples every N epochs: LPC-SI, spectral deficit, a grid.

    Convention:
        Every ``every_n_epochs`` epochs (epoch e counts when ``(e + 1) % every_n_epochs == 0``)
        the callback calls ``sample_fn(pl_module)`` with the module in eval mode, without
        gradients and with the random state of every device restored afterwards (sampling does
        not change the training's random numbers). ``sample_fn`` returns a (B, C, H, W) tensor
        with values in [0, ``data_range``] (C = 1 or 3). The callback logs, through
        ``pl_module.log`` (so they reach the loggers, ``trainer.callback_metrics``,
        ``ModelCheckpoint`` and ``EarlyStopping``):

        * ``{prefix}/lpc_si``: the mean :func:`stftblur.metrics.lpc_si` of the samples (higher
          is sharper);
        * ``{prefix}/spectral_deficit_db``: :func:`stftblur.metrics.spectral_deficit` of the
          samples against ``real`` (positive: less high-frequency power than the real images,
          i.e. blurrier), only when ``real`` is given.

        It runs at the end of the validation epoch when the trainer validates in that epoch
        (not during the sanity check), and otherwise at the end of the training epoch; so the
        values are there when ``ModelCheckpoint`` and ``EarlyStopping`` look. Without a
        validation loop, list ``BlurMonitor`` before an ``EarlyStopping`` that monitors its
        values (``ModelCheckpoint`` always runs last). In a multi-process run the samples of
        every process are gathered (``pl_module.all_gather``) and every process logs the
        values of all of them; only global rank 0 writes the grid. With ``every_n_epochs`` > 1
        the values exist only every N epochs: give ``ModelCheckpoint`` the same
        ``every_n_epochs`` (and ``EarlyStopping`` ``strict=False``).

        With ``save_grid`` the samples are written as one labelled PNG, the epoch, step and
        values in its title, to ``<trainer.log_dir>/blur_monitor/epoch=EEEE-step=SSSSSS.png``
        (:func:`stftblur.viz.image_panels`; needs matplotlib). ``real`` is a (N, C, H, W) tensor
        or an iterable of batches (e.g. a DataLoader) of real images in the same range and size
        as the samples; its spectrum is computed once, on first use. :attr:`last` holds the
        values of the latest run.

    Args:
        sample_fn: ``sample_fn(pl_module) -> (B, C, H, W)`` tensor.
        real: real images for the spectral deficit, or None for LPC-SI only.
        every_n_epochs: run every this many epochs.
        band: the spectral deficit's band (cycles per pixel).
        window: the spectra's window, ``"hann"`` or ``"none"``/``None``.
        n_bins: the spectra's number of bins (None: ``min(H, W) // 2``).
        data_range: the value of white in the samples (and ``real``).
        save_grid: write the labelled sample grid.
        nrow: images per row of the grid.
        scale: file pixels per image pixel in the grid.
        prefix: the logged names' prefix.
        prog_bar: also show the values in the progress bar.

    Examples:
        >>> import torch
        >>> monitor = BlurMonitor(lambda module: torch.rand(4, 1, 32, 32), real=torch.rand(8, 1, 32, 32))
        >>> monitor.every_n_epochs, monitor.names
        (1, ('blur/lpc_si', 'blur/spectral_deficit_db'))
    """

    def __init__(
        self,
        sample_fn: SampleFn,
        real: Optional[Union[torch.Tensor, Iterable[torch.Tensor], RadialPowerSpectrum]] = None,
        every_n_epochs: int = 1,
        *,
        band: Tuple[float, float] = DEFAULT_BAND,
        window: Optional[str] = "hann",
        n_bins: Optional[int] = None,
        data_range: float = 1.0,
        save_grid: bool = True,
        nrow: int = 8,
        scale: int = 4,
        prefix: str = "blur",
        prog_bar: bool = False,
    ) -> None:
        super().__init__()
        if not callable(sample_fn):
            raise TypeError(f"sample_fn must be callable as sample_fn(pl_module), got {type(sample_fn).__name__}")
        if save_grid:
            require_extra("matplotlib", "plot", "BlurMonitor's sample grid (save_grid=True)")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
        probe = RadialSpectrum(window=window, n_bins=n_bins)  # checks window and n_bins
        self.sample_fn = sample_fn
        self.every_n_epochs = check_positive_int(every_n_epochs, "every_n_epochs")
        self.band = _check_band(band)
        self.window = probe.window
        self.n_bins = probe.n_bins
        self.data_range = check_positive_float(data_range, "data_range")
        self.save_grid = save_grid
        self.nrow = check_positive_int(nrow, "nrow")
        self.scale = check_positive_int(scale, "scale")
        self.prefix = prefix
        self.prog_bar = prog_bar
        self._real = real
        self._real_spectrum: Optional[RadialPowerSpectrum] = None
        if isinstance(real, RadialPowerSpectrum):
            self._real_spectrum = real
        elif isinstance(real, torch.Tensor):  # checked (and its spectrum taken) now, not mid-training
            self._real_spectrum = radial_power_spectrum(real, window=window, n_bins=n_bins)
        elif real is not None and (isinstance(real, (str, bytes)) or not isinstance(real, Iterable)):
            raise TypeError(f"real must be None, a (N, C, H, W) tensor or an iterable of batches, got {type(real).__name__}")
        #: The values logged by the latest run (name -> float), empty before the first.
        self.last: Dict[str, float] = {}
        self._ran_epoch: Optional[int] = None

    @property
    def names(self) -> Tuple[str, ...]:
        """The names this callback logs."""
        names = (f"{self.prefix}/lpc_si",)
        if self._real is not None:
            names += (f"{self.prefix}/spectral_deficit_db",)
        return names

    # ------------------------------------------------------------------ hooks

    def _due(self, trainer: Trainer) -> bool:
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not self._due(trainer):
            return
        self._run(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._ran_epoch == trainer.current_epoch or not self._due(trainer):
            return  # already done at this epoch's validation
        self._run(trainer, pl_module)

    # ------------------------------------------------------------------ work

    def _samples(self, trainer: Trainer, pl_module: LightningModule) -> torch.Tensor:
        was_training = pl_module.training
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            pl_module.eval()
            try:
                samples = self.sample_fn(pl_module)
            finally:
                pl_module.train(was_training)
        if not isinstance(samples, torch.Tensor) or samples.dim() != 4 or samples.shape[1] not in (1, 3):
            shape = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
            raise ValueError(f"BlurMonitor: sample_fn must return a (B, C, H, W) tensor with C = 1 or 3, got {shape}")
        samples = samples.detach()
        if trainer.world_size > 1:
            samples = pl_module.all_gather(samples).flatten(0, 1)
        return samples

    def _reference(self) -> Optional[RadialPowerSpectrum]:
        if self._real is not None and self._real_spectrum is None:
            self._real_spectrum = radial_power_spectrum(self._real, window=self.window, n_bins=self.n_bins)
        return self._real_spectrum

    def _run(self, trainer: Trainer, pl_module: LightningModule) -> None:
        samples = self._samples(trainer, pl_module)
        values = {f"{self.prefix}/lpc_si": float(lpc_si(samples, data_range=self.data_range).double().mean())}
        reference = self._reference()
        if reference is not None:
            values[f"{self.prefix}/spectral_deficit_db"] = spectral_deficit(
                samples, reference, band=self.band, window=self.window, n_bins=self.n_bins
            ).deficit_db
        for name, value in values.items():
            pl_module.log(name, value, on_step=False, on_epoch=True, prog_bar=self.prog_bar, logger=True)
        self.last = values
        self._ran_epoch = trainer.current_epoch
        if self.save_grid and trainer.is_global_zero:
            self._write_grid(trainer, samples, values)

    def grid_path(self, trainer: Trainer) -> Path:
        """Where the grid of the current epoch and step goes."""
        root = trainer.log_dir or trainer.default_root_dir
        return Path(root) / "blur_monitor" / f"epoch={trainer.current_epoch:04d}-step={trainer.global_step:06d}.png"

    def _write_grid(self, trainer: Trainer, samples: torch.Tensor, values: Dict[str, float]) -> None:
        from stftblur.viz import image_panels, save_figure

        parts = [f"LPC-SI {values[f'{self.prefix}/lpc_si']:.4f}"]
        deficit = values.get(f"{self.prefix}/spectral_deficit_db")
        if deficit is not None:
            parts.append(f"spectral deficit {deficit:+.2f} dB" if math.isfinite(deficit) else f"spectral deficit {deficit} dB")
        label = f"epoch {trainer.current_epoch}, step {trainer.global_step}: {len(samples)} samples\n" + ", ".join(parts)
        fig = image_panels({label: samples.float().cpu() / self.data_range}, nrow=self.nrow, scale=self.scale)
        path = self.grid_path(trainer)
        os.makedirs(path.parent, exist_ok=True)
        save_figure(fig, path)

    def state_dict(self) -> Dict[str, Any]:
        return {"last": dict(self.last)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.last = dict(state_dict.get("last", {}))
