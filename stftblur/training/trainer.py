"""Training the paper's beta-VAE: exact resume, per-epoch evaluation, PNG exports.

A run directory holds (see ``docs/vae.md``)::

    config.json            the whole training config, as resolved (every coefficient)
    metrics.jsonl          {"event": "train", ...} every log_every steps, {"event": "eval", ...} per epoch
    model.safetensors      latest weights (+ model.json: model config, epoch, step), every epoch
    train_state.pt         model, optimizer, scheduler, RNG states and position, for --resume
    samples.png            prior samples (grid); samples/ one PNG per sample
    reconstructions.png    test inputs (odd rows) and reconstructions (even rows)
    recon/, reference/     per-image PNGs with identical names, for ``stftblur eval``
    summary.json           final metrics; written last (and removed while a run is extended), so
                           its presence marks a complete run

Everything is written atomically (temporary file + rename). ``train_state.pt`` alone decides
where a resumed run continues; it is written before ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch

from stftblur import __version__
from stftblur._checks import check_choice, check_positive_float, check_positive_int
from stftblur._io import PathLike, atomic_write, atomic_write_json, replace_outputs
from stftblur.data import DATASETS, load_dataset
from stftblur.models.vae import VAE, VAEConfig, create_vae, save_vae
from stftblur.training.evaluation import evaluate_reconstructions, sample_prior
from stftblur.training.export import save_grid, save_images
from stftblur.training.objective import ObjectiveConfig, VAEObjective

CONFIG_FORMAT = "stftblur-train-vae"
STATE_FILE = "train_state.pt"
# Files and directories a run writes; --force removes exactly these.
RUN_FILES = (
    "config.json",
    "metrics.jsonl",
    "model.safetensors",
    "model.json",
    STATE_FILE,
    "samples.png",
    "reconstructions.png",
    "summary.json",
)
RUN_DIRS = ("samples", "recon", "reference")
# Fields that may differ from the stored config when a run is resumed (they extend or move a
# run without changing what was computed so far).
RESUMABLE_CHANGES = ("epochs", "max_steps", "device", "log_every")


class RunDirError(ValueError):
    """The output directory cannot be used as asked (exists, holds something else, ...).

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "notes.txt").write_text("not a run")
        >>> try:
        ...     prepare_run_dir(d)
        ... except RunDirError as e:
        ...     print("refused")
        refused
    """


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a train-vae run; written to ``config.json``.

    Args:
        objective: the loss, see :class:`~stftblur.training.ObjectiveConfig`.
        model: the architecture, see :class:`~stftblur.models.VAEConfig`.
        dataset: ``"mnist"`` or ``"fashion-mnist"``.
        data_dir: explicit data directory (None: the lookup of :func:`stftblur.data.find_dataset`).
        binarize: threshold inputs at 0.5 as the paper does (False: grayscale).
        epochs: passes over the training set (50 in the paper).
        batch_size: images per step (50 in the paper).
        max_steps: stop after this many steps in total (None: no limit).
        train_size: use the first N training images (None: all 60,000).
        eval_size: evaluate on the first N test images each epoch (None: all 10,000).
        lr_min: CyclicLR base_lr (1e-4).
        lr_max: CyclicLR max_lr (1e-3).
        lr_step_size: CyclicLR step_size_up (2000 steps; step_size_down is the same).
        lr_mode: CyclicLR mode (``"triangular2"``: the amplitude halves every cycle).
        adam_eps: Adam's epsilon (1e-7, Keras' default, which the authors' code used).
        seed: seeds the initial weights, the shuffling and the posterior noise.
        log_every: write the averaged loss terms to metrics.jsonl every N steps.
        eval_batch_size: images per forward pass in evaluation.
        n_samples: prior samples written as PNGs at the end.
        n_export: test reconstructions (and their references) written as PNGs at the end.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Examples:
        >>> TrainConfig(epochs=1).steps_per_epoch(200)
        4
    """

    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    model: VAEConfig = field(default_factory=VAEConfig)
    dataset: str = "mnist"
    data_dir: Optional[str] = None
    binarize: bool = True
    epochs: int = 50
    batch_size: int = 50
    max_steps: Optional[int] = None
    train_size: Optional[int] = None
    eval_size: Optional[int] = None
    lr_min: float = 1e-4
    lr_max: float = 1e-3
    lr_step_size: int = 2000
    lr_mode: str = "triangular2"
    adam_eps: float = 1e-7
    seed: int = 0
    log_every: int = 100
    eval_batch_size: int = 50
    n_samples: int = 64
    n_export: int = 1000
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not isinstance(self.objective, ObjectiveConfig):
            raise TypeError(f"objective must be an ObjectiveConfig, got {type(self.objective).__name__}")
        if not isinstance(self.model, VAEConfig):
            raise TypeError(f"model must be a VAEConfig, got {type(self.model).__name__}")
        check_choice(self.dataset, "dataset", DATASETS)
        for name in ("epochs", "batch_size", "lr_step_size", "log_every", "eval_batch_size", "n_samples"):
            check_positive_int(getattr(self, name), name)
        for name in ("max_steps", "train_size", "eval_size"):
            if getattr(self, name) is not None:
                check_positive_int(getattr(self, name), name)
        if isinstance(self.n_export, bool) or not isinstance(self.n_export, int) or self.n_export < 0:
            raise ValueError(f"n_export must be an int >= 0, got {self.n_export!r}")
        check_positive_float(self.lr_min, "lr_min")
        check_positive_float(self.lr_max, "lr_max")
        if self.lr_max < self.lr_min:
            raise ValueError(f"lr_max must be >= lr_min, got {self.lr_max} < {self.lr_min}")
        check_choice(self.lr_mode, "lr_mode", ("triangular", "triangular2", "exp_range"))
        check_positive_float(self.adam_eps, "adam_eps")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")

    def steps_per_epoch(self, n_train: int) -> int:
        """Steps in one epoch over ``n_train`` images (the last batch may be smaller)."""
        return math.ceil(n_train / self.batch_size)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-serialisable form (the objective as given; config.json adds it resolved)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["objective"] = self.objective.to_dict()
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict` (extra keys written to config.json are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["objective"] = ObjectiveConfig.from_dict(d.get("objective", {}))
        kw["model"] = VAEConfig.from_dict(d.get("model", {}))
        return cls(**kw)


_OBJECTIVE_FIELDS = tuple(f.name for f in dataclasses.fields(ObjectiveConfig))
_MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(VAEConfig))


def make_train_config(base: Optional[TrainConfig] = None, **options: Any) -> TrainConfig:
    """A :class:`TrainConfig` from flat options: run, objective and model fields by their names.

    ``base`` (default: ``TrainConfig()``) provides every field not given; options whose value is
    None are ignored, so a command line can pass all of its options unfiltered.

    Examples:
        >>> cfg = make_train_config(loss="l2", latent_dim=8, epochs=3)
        >>> cfg.objective.loss, cfg.model.latent_dim, cfg.epochs
        ('l2', 8, 3)
        >>> make_train_config(cfg, epochs=None).epochs
        3
    """
    base = TrainConfig() if base is None else base
    options = {k: v for k, v in options.items() if v is not None}
    top = {f.name for f in dataclasses.fields(TrainConfig)} - {"objective", "model"}
    unknown = sorted(set(options) - top - set(_OBJECTIVE_FIELDS) - set(_MODEL_FIELDS))
    if unknown:
        raise ValueError(f"unknown training options {unknown}")
    objective = {k: v for k, v in options.items() if k in _OBJECTIVE_FIELDS}
    model = {k: v for k, v in options.items() if k in _MODEL_FIELDS}
    run = {k: v for k, v in options.items() if k in top}
    if objective:
        base_obj = base.objective.to_dict()
        if "loss" in objective and objective["loss"] != base.objective.loss:
            # A different loss starts from that loss's defaults, not the old loss's options.
            base_obj = {"beta": base_obj["beta"]}
        base = dataclasses.replace(base, objective=ObjectiveConfig.from_dict({**base_obj, **objective}))
    if model:
        base = dataclasses.replace(base, model=dataclasses.replace(base.model, **model))
    return dataclasses.replace(base, **run)


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


# --------------------------------------------------------------------------- run directory


def _is_run_dir(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("format") == CONFIG_FORMAT
    except (OSError, ValueError):
        return False


def prepare_run_dir(out_dir: PathLike, resume: bool = False, force: bool = False) -> Tuple[Path, bool]:
    """Check (and with ``force`` clear) the output directory; returns (path, has_existing_run).

    An existing non-empty directory is refused unless ``resume`` (continue the run in it) or
    ``force`` (delete that run's files; only a directory that holds a train-vae run, nothing
    else is ever deleted).

    Examples:
        >>> import tempfile
        >>> prepare_run_dir(tempfile.mkdtemp())[1]
        False
    """
    if resume and force:
        raise RunDirError("resume and force exclude each other: resume continues a run, force deletes it")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} exists and is not a directory")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries:
        return out, False
    if resume:
        if not _is_run_dir(out):
            raise RunDirError(f"--out {out} is not empty and holds no train-vae run (no config.json); cannot resume it")
        return out, True
    if force:
        if not _is_run_dir(out):
            raise RunDirError(
                f"--out {out} is not empty and holds no train-vae run (no config.json); --force only replaces "
                f"a previous run, choose an empty or new directory"
            )
        try:
            replace_outputs(out, RUN_FILES + RUN_DIRS)
        except FileExistsError as e:
            raise RunDirError(f"--out: {e}; not deleting anything") from None
        return out, False
    raise RunDirError(
        f"--out {out} already exists and is not empty; pass --resume to continue the run in it, --force to "
        f"replace it, or choose another directory"
    )


def load_run_config(out_dir: PathLike) -> TrainConfig:
    """The :class:`TrainConfig` stored in a run directory's config.json.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> write_run_config(d, TrainConfig(epochs=3))
        >>> load_run_config(d).epochs
        3
    """
    path = Path(out_dir) / "config.json"
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunDirError(f"cannot read {path}: {e}") from e
    if d.get("format") != CONFIG_FORMAT:
        raise RunDirError(f"{path} is not a train-vae config (format {d.get('format')!r})")
    return TrainConfig.from_dict(d["config"])


def write_run_config(out_dir: PathLike, config: TrainConfig) -> None:
    """Write config.json (atomically): the config as given, the resolved objective, and the version.

    Examples:
        >>> import tempfile, pathlib, json
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> write_run_config(d, TrainConfig())
        >>> json.loads((d / "config.json").read_text())["objective_resolved"]["freq_weight"]
        0.0015
    """
    atomic_write_json(
        Path(out_dir) / "config.json",
        {
            "format": CONFIG_FORMAT,
            "stftblur_version": __version__,
            "config": config.to_dict(),
            "objective_resolved": config.objective.resolved(config.model.image_size),
            # Float results on CPU depend on the thread count: a resumed run is bit-identical to an
            # uninterrupted one only with the same number of threads.
            "torch_threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
        },
    )


def _config_changes(old: TrainConfig, new: TrainConfig) -> List[str]:
    """Names of the fields that differ, nested ones as ``objective.loss``."""
    a, b = old.to_dict(), new.to_dict()
    changed = []
    for k in a:
        if isinstance(a[k], dict):
            changed += [f"{k}.{sub}" for sub in a[k] if a[k][sub] != b[k].get(sub)]
        elif a[k] != b[k]:
            changed.append(k)
    return changed


# --------------------------------------------------------------------------- training


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


class _MetricsLog:
    """Append-only metrics.jsonl whose length at a checkpoint is recorded, so a resumed run can
    cut off the lines written after it."""

    def __init__(self, path: Path, truncate_to: Optional[int]) -> None:
        self.path = path
        if truncate_to is not None and path.exists():
            with open(path, "r+b") as f:
                f.truncate(truncate_to)
        elif truncate_to is None and path.exists():
            path.unlink()
        self.f = open(path, "ab")

    def write(self, record: Mapping[str, Any]) -> None:
        self.f.write((json.dumps(record) + "\n").encode())
        self.f.flush()

    def offset(self) -> int:
        self.f.flush()
        return self.f.tell()

    def close(self) -> None:
        self.f.close()


class _Window:
    """Sums of the loss terms since the last metrics record (tensors: no sync per step); saved in
    checkpoints, so that a resumed run writes the same records as an uninterrupted one."""

    def __init__(self) -> None:
        self.sums: Dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, terms: Mapping[str, torch.Tensor]) -> None:
        for k, v in terms.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1

    def means(self) -> Dict[str, float]:
        return {k: float(v) / self.count for k, v in self.sums.items()}

    def pop(self) -> Dict[str, float]:
        values = self.means()
        self.sums, self.count = {}, 0
        return values


def _save_checkpoint(
    out: Path,
    model: VAE,
    opt: torch.optim.Optimizer,
    sched: Any,
    data_gen_epoch_start: torch.Tensor,
    noise_gen: torch.Generator,
    epoch: int,
    batch_in_epoch: int,
    step: int,
    log: _MetricsLog,
    window: _Window,
) -> None:
    state = {
        "format": CONFIG_FORMAT,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "step": step,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "data_generator": data_gen_epoch_start.clone(),
        "noise_generator": noise_gen.get_state(),
        "metrics_offset": log.offset(),
        "log_window": {"sums": {k: v.detach().cpu() for k, v in window.sums.items()}, "count": window.count},
        "torch_version": torch.__version__,
    }
    atomic_write(out / STATE_FILE, lambda tmp: torch.save(state, tmp))
    save_vae(model, out / "model.safetensors", {"epoch": epoch, "batch_in_epoch": batch_in_epoch, "step": step})


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
            for the fields in :data:`RESUMABLE_CHANGES`.
        out_dir: the run directory (see the module docstring for its layout).
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
    say = log or (lambda msg: None)
    out, existing = prepare_run_dir(out_dir, resume=resume, force=force)
    device = torch.device(config.device)
    if existing:
        stored = load_run_config(out)
        stored_threads = json.loads((out / "config.json").read_text()).get("torch_threads")
        if stored_threads is not None and stored_threads != torch.get_num_threads():
            say(f"warning: {out} ran with {stored_threads} torch threads, this process has "
                f"{torch.get_num_threads()}: the continued run will differ from an uninterrupted one in float rounding")
        changed = [k for k in _config_changes(stored, config) if k not in RESUMABLE_CHANGES]
        if changed:
            raise RunDirError(
                f"cannot resume {out} with a different configuration: {', '.join(changed)} differ from its "
                f"config.json (only {', '.join(RESUMABLE_CHANGES)} may change on resume)"
            )
    train = load_dataset(config.dataset, "train", config.data_dir, binarize=config.binarize, download=download)
    test = load_dataset(config.dataset, "test", config.data_dir, binarize=config.binarize, download=download)
    if config.train_size is not None:
        train = train[: config.train_size]
    if config.eval_size is not None:
        test = test[: config.eval_size]
    x_train = train.images.to(device)
    x_test = test.images.to(device)
    n = x_train.shape[0]
    if x_train.shape[-1] != config.model.image_size or x_train.shape[1] != config.model.in_channels:
        raise ValueError(
            f"{config.dataset} images have shape {tuple(x_train.shape[1:])}, the model expects "
            f"({config.model.in_channels}, {config.model.image_size}, {config.model.image_size})"
        )

    out.mkdir(parents=True, exist_ok=True)
    model = _init_model(config, device)
    objective = VAEObjective(config.objective, config.model.image_size)
    opt, sched = make_optimizer(model, config)
    data_gen = torch.Generator().manual_seed(config.seed)
    noise_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    epoch, batch_in_epoch, step = 0, 0, 0
    state_path = out / STATE_FILE
    metrics_offset: Optional[int] = None
    saved_window: Optional[Dict[str, Any]] = None
    resumed_from: Optional[int] = None
    if existing and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        data_gen.set_state(state["data_generator"])
        noise_gen.set_state(state["noise_generator"])
        epoch, batch_in_epoch, step = state["epoch"], state["batch_in_epoch"], state["step"]
        metrics_offset = state["metrics_offset"]
        saved_window = state.get("log_window")  # absent in checkpoints of stftblur before this field
        resumed_from = step
        say(f"resuming {out} at epoch {epoch + 1}, step {step}")
    elif existing:
        say(f"{out} holds no checkpoint yet; starting its run from the beginning")
        metrics_offset = 0
    write_run_config(out, config)
    metrics_log = _MetricsLog(out / "metrics.jsonl", metrics_offset)

    steps_per_epoch = config.steps_per_epoch(n)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    if step < total_steps:
        # There is training to do: the run is not complete until a new summary is written.
        (out / "summary.json").unlink(missing_ok=True)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=min(step, total_steps), unit="step", dynamic_ncols=True)

    model.train()
    window = _Window()
    if saved_window is not None:  # the steps since the last record, so that records match an uninterrupted run
        window.sums = {k: v.to(device) for k, v in saved_window["sums"].items()}
        window.count = saved_window["count"]
    last_eval: Dict[str, float] = {}
    t_start = time.perf_counter()

    def log_window(epoch_number: int) -> None:
        metrics_log.write({"event": "train", "epoch": epoch_number, "step": step, "lr": sched.get_last_lr()[0],
                           **window.pop()})

    try:
        while epoch < config.epochs and step < total_steps:
            epoch_start_state = data_gen.get_state()
            perm = torch.randperm(n, generator=data_gen).to(device)
            batches = range(batch_in_epoch * config.batch_size, n, config.batch_size)
            for start in batches:
                if step >= total_steps:
                    break
                x = x_train[perm[start : start + config.batch_size]]
                terms = train_step(model, objective, opt, sched, x, noise_gen)
                step += 1
                batch_in_epoch += 1
                window.add(terms)
                if bar is not None:
                    if step % 10 == 0:
                        bar.set_postfix(_format_terms({"ep": epoch + 1, **window.means()}), refresh=False)
                    bar.update(1)
                if step % config.log_every == 0:
                    log_window(epoch + 1)
                if callback is not None:
                    callback(step, {k: float(v) for k, v in terms.items()})
            epoch_done = batch_in_epoch >= steps_per_epoch
            if epoch_done and window.count:
                log_window(epoch + 1)  # records never span two epochs
            if epoch_done:
                epoch += 1
                batch_in_epoch = 0
                epoch_start_state = data_gen.get_state()
            last_eval = evaluate_reconstructions(model, x_test, batch_size=config.eval_batch_size, seed=config.seed)
            model.train()
            record = {"event": "eval", "epoch": epoch if epoch_done else epoch + 1, "step": step, "complete_epoch": epoch_done}
            metrics_log.write({**record, **last_eval})
            say(
                f"epoch {record['epoch']} step {step}: PSNR {last_eval['psnr_sampled']:.3f} dB, SSIM "
                f"{last_eval['ssim_sampled']:.4f} (sampled z, raw output); mean z: {last_eval['psnr_mean']:.3f} dB, "
                f"{last_eval['ssim_mean']:.4f}"
            )
            _save_checkpoint(out, model, opt, sched, epoch_start_state, noise_gen, epoch, batch_in_epoch, step,
                             metrics_log, window)
    finally:
        if bar is not None:
            bar.close()
        metrics_log.close()
    elapsed = time.perf_counter() - t_start

    if not last_eval:  # resumed a run that was already complete
        last_eval = evaluate_reconstructions(model, x_test, batch_size=config.eval_batch_size, seed=config.seed)
    model.eval()
    _export(out, model, x_test, config)
    summary = {
        "complete": True,
        "stopped_by": "epochs" if epoch >= config.epochs else "max_steps",
        "epoch": epoch,
        "step": step,
        "train_images": n,
        "test_images": int(x_test.shape[0]),
        "seconds_this_session": round(elapsed, 2),
        "resumed_from_step": resumed_from,
        "metrics": last_eval,
    }
    atomic_write_json(out / "summary.json", summary)
    return TrainResult(out, model, step, epoch, last_eval, resumed_from)


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
