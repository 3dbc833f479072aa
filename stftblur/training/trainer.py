"""The train-vae training loop: load the data, build or restore the state, train, evaluate, export.

:func:`train_vae` reads top to bottom; the run directory (its config, checkpoint, metrics log)
is :mod:`stftblur.training.run_dir`, the configuration :mod:`stftblur.training.config`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch

from stftblur._atomic import PathLike
from stftblur.data import load_dataset
from stftblur.io import save_grid, save_images
from stftblur.models.vae import VAE, create_vae
from stftblur.training.config import TrainConfig
from stftblur.training.evaluation import evaluate_reconstructions, sample_prior
from stftblur.training.objective import VAEObjective
from stftblur.training.run_dir import (
    METRICS_FILE,
    SUMMARY_FILE,
    MetricsLog,
    TrainingState,
    check_resumable,
    prepare_run_dir,
    restore_checkpoint,
    run_kernels,
    save_checkpoint,
    write_run_config,
    write_summary,
)

__all__ = ["TrainResult", "make_optimizer", "train_step", "train_vae"]


@dataclass
class TrainResult:
    """What :func:`train_vae` returns: the run directory, the final model, its position and the
    final test metrics (``psnr_sampled``, ``ssim_sampled``, ...; see
    :func:`~stftblur.training.evaluate_reconstructions`).

    Examples:
        >>> from stftblur.models import create_vae
        >>> TrainResult(Path("run"), create_vae(), step=0, epoch=0, metrics={}).resumed_from_step is None
        True
    """

    out_dir: Path
    model: VAE
    step: int
    epoch: int
    metrics: Dict[str, float]
    resumed_from_step: Optional[int] = None


def make_optimizer(model: VAE, config: TrainConfig) -> Tuple[torch.optim.Optimizer, Any]:
    """Adam and the cyclical learning rate of ``config`` (the paper's: triangular2, 1e-4..1e-3).

    Examples:
        >>> from stftblur.models import create_vae
        >>> opt, sched = make_optimizer(create_vae(), TrainConfig())
        >>> type(sched).__name__, sched.get_last_lr()
        ('CyclicLR', [0.0001])
    """
    params = list(model.parameters())
    try:  # the fused kernel: one pass over all parameters (about 1 ms less per step on CPU)
        opt = torch.optim.Adam(params, lr=config.lr_min, eps=config.adam_eps, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device or torch version without it
        opt = torch.optim.Adam(params, lr=config.lr_min, eps=config.adam_eps)
    sched = torch.optim.lr_scheduler.CyclicLR(
        opt,
        base_lr=config.lr_min,
        max_lr=config.lr_max,
        step_size_up=config.lr_step_size,
        mode=config.lr_mode,
        cycle_momentum=False,
    )
    return opt, sched


def _init_model(config: TrainConfig, device: torch.device) -> VAE:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = create_vae(config.model)
    return model.to(device)


def train_step(
    model: VAE,
    objective: VAEObjective,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    x: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> Dict[str, torch.Tensor]:
    """One optimisation step on the batch ``x``: forward with sampled z, loss, backward, Adam and
    scheduler steps. Returns the detached loss terms (no device synchronisation).

    Examples:
        >>> import torch
        >>> from stftblur.models import create_vae
        >>> model = create_vae()
        >>> opt = torch.optim.Adam(model.parameters())
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        >>> from stftblur.training import ObjectiveConfig, VAEObjective
        >>> terms = train_step(model, VAEObjective(ObjectiveConfig("l2")), opt, sched, torch.rand(4, 1, 28, 28))
        >>> sorted(terms)
        ['kl', 'l2', 'loss']
    """
    out = model(x, generator=generator)
    loss, terms = objective(out.recon, x, out.mean, out.logvar)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return terms


def _format_terms(terms: Mapping[str, float]) -> Dict[str, str]:
    return {k: f"{v:.4g}" for k, v in terms.items()}


def train_vae(
    config: TrainConfig,
    out_dir: PathLike,
    resume: bool = False,
    force: bool = False,
    progress: bool = False,
    download: bool = True,
    callback: Optional[Callable[[int, Dict[str, float]], None]] = None,
    log: Optional[Callable[[str], None]] = None,
) -> TrainResult:
    """Train the paper's VAE as ``config`` says, writing everything into ``out_dir``.

    Convention:
        Adam + ``torch.optim.lr_scheduler.CyclicLR`` stepped once per batch; each epoch is a
        fresh permutation of the in-memory training tensors drawn from a dedicated generator;
        the posterior noise comes from a second generator; evaluation uses its own. On CPU the
        run is deterministic for a given seed. A checkpoint is written at the end of every epoch
        (and when ``max_steps`` stops the run); ``resume=True`` restores model, optimizer,
        scheduler and both generators and continues from that point, so a run killed at any
        moment and resumed ends with the same weights as an uninterrupted one (the interrupted
        epoch restarts from its beginning). Resuming a complete run with a larger ``epochs`` or
        ``max_steps`` extends it.

    Args:
        config: the run's configuration. With ``resume`` it must equal the stored one, except
            for the fields in :data:`~stftblur.training.run_dir.RESUMABLE_CHANGES`.
        out_dir: the run directory (see :mod:`stftblur.training.run_dir` for its layout).
        resume: continue the run stored in ``out_dir`` (a new run is started when it holds
            no checkpoint yet).
        force: replace the train-vae run in ``out_dir``.
        progress: show a tqdm progress bar (ETA and the current loss terms) on stderr.
        download: allow downloading the dataset when it is not found locally.
        callback: called as ``callback(step, terms)`` after every optimizer step.
        log: called with one-line status messages (e.g. ``print``).

    Returns:
        A :class:`TrainResult` with the final model and metrics.

    Examples:
        >>> cfg = TrainConfig(epochs=1, max_steps=2)
        >>> cfg.objective.loss
        'ours'
    """
    return _train_vae(config, out_dir, resume=resume, force=force, progress=progress, download=download,
                      callback=callback, log=log)


def _train_vae(config: TrainConfig, out_dir: PathLike, *, resume: bool, force: bool, progress: bool, download: bool,
               callback: Optional[Callable[[int, Dict[str, float]], None]],
               log: Optional[Callable[[str], None]]) -> TrainResult:
    say = log or (lambda msg: None)
    out, existing = prepare_run_dir(out_dir, resume=resume, force=force)
    kernels = "auto"  # the local-phase loss's kernels: a resumed run keeps those it started with
    if existing:
        check_resumable(out, config, say)
        kernels = run_kernels(out)
    device = torch.device(config.device)
    x_train, x_test = _load_data(config, device, download)
    out.mkdir(parents=True, exist_ok=True)
    state = _new_state(config, device)
    metrics_offset, resumed_from = _resume(out, existing, state, say)
    write_run_config(out, config, kernels)
    metrics_log = MetricsLog(out / METRICS_FILE, metrics_offset)

    total_steps = config.epochs * config.steps_per_epoch(x_train.shape[0])
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    if state.step < total_steps:
        # There is training to do: the run is not complete until a new summary is written.
        (out / SUMMARY_FILE).unlink(missing_ok=True)
    t_start = time.perf_counter()
    try:
        objective = VAEObjective(config.objective, config.model.image_size, kernels=kernels)
        last_eval = _train(config, objective, out, state, x_train, x_test, total_steps, metrics_log, progress, callback, say)
    finally:
        metrics_log.close()
    elapsed = time.perf_counter() - t_start

    if not last_eval:  # resumed a run that was already complete
        last_eval = evaluate_reconstructions(state.model, x_test, batch_size=config.eval_batch_size, seed=config.seed)
    state.model.eval()
    _export(out, state.model, x_test, config)
    write_summary(out, {
        "complete": True,
        "stopped_by": "epochs" if state.epoch >= config.epochs else "max_steps",
        "epoch": state.epoch,
        "step": state.step,
        "train_images": int(x_train.shape[0]),
        "test_images": int(x_test.shape[0]),
        "seconds_this_session": round(elapsed, 2),
        "resumed_from_step": resumed_from,
        "metrics": last_eval,
    })
    return TrainResult(out, state.model, state.step, state.epoch, last_eval, resumed_from)


def _load_data(config: TrainConfig, device: torch.device, download: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """The training and test images of ``config`` (subsets as asked) on ``device``."""
    train = load_dataset(config.dataset, "train", config.data_dir, binarize=config.binarize, download=download)
    test = load_dataset(config.dataset, "test", config.data_dir, binarize=config.binarize, download=download)
    if config.train_size is not None:
        train = train[: config.train_size]
    if config.eval_size is not None:
        test = test[: config.eval_size]
    x_train = train.images.to(device)
    x_test = test.images.to(device)
    if x_train.shape[-1] != config.model.image_size or x_train.shape[1] != config.model.in_channels:
        raise ValueError(
            f"{config.dataset} images have shape {tuple(x_train.shape[1:])}, the model expects "
            f"({config.model.in_channels}, {config.model.image_size}, {config.model.image_size})"
        )
    return x_train, x_test


def _new_state(config: TrainConfig, device: torch.device) -> TrainingState:
    """The state at step 0: seeded weights, optimizer and schedule, the two generators."""
    model = _init_model(config, device)
    opt, sched = make_optimizer(model, config)
    data_gen = torch.Generator().manual_seed(config.seed)
    noise_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    return TrainingState(model, opt, sched, data_gen, noise_gen)


def _resume(out: Path, existing: bool, state: TrainingState, say: Callable[[str], None]) -> Tuple[Optional[int], Optional[int]]:
    """Restore the checkpoint of an existing run into ``state``: (metrics.jsonl length to keep or
    None for a new log, the step resumed from or None)."""
    if not existing:
        return None, None
    metrics_offset = restore_checkpoint(out, state)
    if metrics_offset is None:
        say(f"{out} holds no checkpoint yet; starting its run from the beginning")
        return 0, None
    say(f"resuming {out} at epoch {state.epoch + 1}, step {state.step}")
    return metrics_offset, state.step


def _train(
    config: TrainConfig,
    objective: VAEObjective,
    out: Path,
    state: TrainingState,
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    total_steps: int,
    metrics_log: MetricsLog,
    progress: bool,
    callback: Optional[Callable[[int, Dict[str, float]], None]],
    say: Callable[[str], None],
) -> Dict[str, float]:
    """Run epochs until ``config.epochs`` or ``total_steps``; evaluate and checkpoint after each
    (and when stopped by ``total_steps``). Returns the last evaluation ({} if nothing ran)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=min(state.step, total_steps), unit="step", dynamic_ncols=True)
    state.model.train()
    last_eval: Dict[str, float] = {}
    try:
        while state.epoch < config.epochs and state.step < total_steps:
            _train_epoch(config, objective, state, x_train, total_steps, metrics_log, bar, callback)
            last_eval = _evaluate(config, state, x_test, metrics_log, say)
            save_checkpoint(out, state, metrics_log.offset())
    finally:
        if bar is not None:
            bar.close()
    return last_eval


def _train_epoch(
    config: TrainConfig,
    objective: VAEObjective,
    state: TrainingState,
    x_train: torch.Tensor,
    total_steps: int,
    metrics_log: MetricsLog,
    bar: Any,
    callback: Optional[Callable[[int, Dict[str, float]], None]],
) -> None:
    """The rest of the current epoch (from ``state.batch_in_epoch``), or up to ``total_steps``."""
    n = x_train.shape[0]
    state.epoch_start_data_state = state.data_generator.get_state()
    perm = torch.randperm(n, generator=state.data_generator).to(x_train.device)
    for start in range(state.batch_in_epoch * config.batch_size, n, config.batch_size):
        if state.step >= total_steps:
            break
        x = x_train[perm[start : start + config.batch_size]]
        terms = train_step(state.model, objective, state.optimizer, state.scheduler, x, state.noise_generator)
        state.step += 1
        state.batch_in_epoch += 1
        state.window.add(terms)
        if bar is not None:
            if state.step % 10 == 0:
                bar.set_postfix(_format_terms({"ep": state.epoch + 1, **state.window.means()}), refresh=False)
            bar.update(1)
        if state.step % config.log_every == 0:
            _log_window(metrics_log, state, state.epoch + 1)
        if callback is not None:
            callback(state.step, {k: float(v) for k, v in terms.items()})
    if state.batch_in_epoch >= config.steps_per_epoch(n):
        if state.window.count:
            _log_window(metrics_log, state, state.epoch + 1)  # records never span two epochs
        state.epoch += 1
        state.batch_in_epoch = 0
        state.epoch_start_data_state = state.data_generator.get_state()


def _log_window(metrics_log: MetricsLog, state: TrainingState, epoch_number: int) -> None:
    metrics_log.write({"event": "train", "epoch": epoch_number, "step": state.step,
                       "lr": state.scheduler.get_last_lr()[0], **state.window.pop()})


def _evaluate(config: TrainConfig, state: TrainingState, x_test: torch.Tensor, metrics_log: MetricsLog,
              say: Callable[[str], None]) -> Dict[str, float]:
    """Test-set metrics after an epoch (or a partial one), logged and said."""
    epoch_done = state.batch_in_epoch == 0
    last_eval = evaluate_reconstructions(state.model, x_test, batch_size=config.eval_batch_size, seed=config.seed)
    state.model.train()
    record = {"event": "eval", "epoch": state.epoch if epoch_done else state.epoch + 1, "step": state.step,
              "complete_epoch": epoch_done}
    metrics_log.write({**record, **last_eval})
    say(
        f"epoch {record['epoch']} step {state.step}: PSNR {last_eval['psnr_sampled']:.3f} dB, SSIM "
        f"{last_eval['ssim_sampled']:.4f} (sampled z, raw output); mean z: {last_eval['psnr_mean']:.3f} dB, "
        f"{last_eval['ssim_mean']:.4f}"
    )
    return last_eval


def _export(out: Path, model: VAE, x_test: torch.Tensor, config: TrainConfig) -> None:
    """Final PNGs: sample grid and per-sample files, reconstruction grid, recon/ and reference/."""
    samples = sample_prior(model, config.n_samples, seed=config.seed, batch_size=config.eval_batch_size)
    save_grid(samples, out / "samples.png", nrow=8)
    shutil.rmtree(out / "samples", ignore_errors=True)
    save_images(samples, out / "samples", prefix="sample")
    with torch.no_grad():
        k = min(32, x_test.shape[0])
        x = x_test[:k]
        recon = model.decode(model.encode(x)[0])
        rows = [t for i in range(0, k, 8) for t in (x[i : i + 8], recon[i : i + 8])]
        save_grid(torch.cat(rows), out / "reconstructions.png", nrow=8)
        m = min(config.n_export, x_test.shape[0])
        for name in ("recon", "reference"):
            shutil.rmtree(out / name, ignore_errors=True)
        if m:
            names = [f"test-{i:05d}" for i in range(m)]
            bs = config.eval_batch_size
            recons = torch.cat([model.decode(model.encode(x_test[i : min(i + bs, m)])[0]) for i in range(0, m, bs)])
            save_images(recons, out / "recon", names)
            save_images(x_test[:m], out / "reference", names)
