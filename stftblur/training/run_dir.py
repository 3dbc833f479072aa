"""The train-vae run directory: its layout, config, checkpoint (save and restore), metrics log.

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

Everything but the PNG exports is written atomically (temporary file + rename).
``train_state.pt`` alone decides where a resumed run continues; it is written before
``model.safetensors``. :func:`save_checkpoint` and :func:`restore_checkpoint` are the only
code that knows its format.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch

from stftblur import __version__
from stftblur._atomic import PathLike, atomic_write, atomic_write_json, replace_outputs
from stftblur.errors import StftblurError
from stftblur.losses import _compiled
from stftblur.models.vae import VAE, save_vae
from stftblur.training.config import TrainConfig

__all__ = [
    "RESUMABLE_CHANGES",
    "LossWindow",
    "MetricsLog",
    "RunDirError",
    "TrainingState",
    "check_resumable",
    "load_run_config",
    "prepare_run_dir",
    "restore_checkpoint",
    "save_checkpoint",
    "write_run_config",
]

CONFIG_FORMAT = "stftblur-train-vae"
CONFIG_FILE = "config.json"
STATE_FILE = "train_state.pt"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
# Files and directories a run writes; --force removes exactly these.
RUN_FILES = (
    CONFIG_FILE,
    METRICS_FILE,
    "model.safetensors",
    "model.json",
    STATE_FILE,
    "samples.png",
    "reconstructions.png",
    SUMMARY_FILE,
)
RUN_DIRS = ("samples", "recon", "reference")
# Fields that may differ from the stored config when a run is resumed (they extend or move a
# run without changing what was computed so far).
RESUMABLE_CHANGES = ("epochs", "max_steps", "device", "log_every")


class RunDirError(StftblurError, ValueError):
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


# --------------------------------------------------------------------------- the directory


def _is_run_dir(path: Path) -> bool:
    cfg = path / CONFIG_FILE
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


# --------------------------------------------------------------------------- config.json


def load_run_config(out_dir: PathLike) -> TrainConfig:
    """The :class:`TrainConfig` stored in a run directory's config.json.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> write_run_config(d, TrainConfig(epochs=3))
        >>> load_run_config(d).epochs
        3
    """
    path = Path(out_dir) / CONFIG_FILE
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
        Path(out_dir) / CONFIG_FILE,
        {
            "format": CONFIG_FORMAT,
            "stftblur_version": __version__,
            "config": config.to_dict(),
            "objective_resolved": config.objective.resolved(config.model.image_size),
            # Float results on CPU depend on the thread count: a resumed run is bit-identical to an
            # uninterrupted one only with the same number of threads.
            "torch_threads": torch.get_num_threads(),
            # The same holds for the loss's compiled CPU kernels against its pure-PyTorch path
            # (equal to float32 rounding); a resumed run keeps the path it started with.
            "compiled_kernels": _compiled.available(),
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


def check_resumable(out_dir: PathLike, config: TrainConfig, say: Optional[Callable[[str], None]] = None) -> None:
    """Refuse to resume the run in ``out_dir`` with a ``config`` that differs from the stored one
    in more than :data:`RESUMABLE_CHANGES`; warn (through ``say``) when the thread count differs.

    A run started on the pure-PyTorch path of the local-phase loss (``compiled_kernels`` false
    or absent in its config.json) is continued on that path: this switches the compiled kernels
    off for the process (:func:`stftblur.losses._compiled.set_enabled`), which
    :func:`~stftblur.training.train_vae` undoes when it returns.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> write_run_config(d, TrainConfig(epochs=3))
        >>> check_resumable(d, TrainConfig(epochs=5))  # more epochs extend the run
        >>> try:
        ...     check_resumable(d, TrainConfig(seed=1))
        ... except RunDirError as e:
        ...     print(str(e).split(":")[1].strip())
        seed differ from its config.json (only epochs, max_steps, device, log_every may change on resume)
    """
    out = Path(out_dir)
    stored = load_run_config(out)
    say = say or (lambda msg: None)
    stored_threads = json.loads((out / CONFIG_FILE).read_text()).get("torch_threads")
    if stored_threads is not None and stored_threads != torch.get_num_threads():
        say(f"warning: {out} ran with {stored_threads} torch threads, this process has "
            f"{torch.get_num_threads()}: the continued run will differ from an uninterrupted one in float rounding")
    # Runs written before the compiled kernels existed (no key) used the pure-PyTorch path.
    started_compiled = bool(json.loads((out / CONFIG_FILE).read_text()).get("compiled_kernels", False))
    if not started_compiled:
        _compiled.set_enabled(False)  # the caller (train_vae) restores the previous choice
    elif not _compiled.available():
        say(f"warning: {out} ran with the compiled loss kernels, which are not available here "
            f"({_compiled.status()}): the continued run will differ from an uninterrupted one in float rounding")
    changed = [k for k in _config_changes(stored, config) if k not in RESUMABLE_CHANGES]
    if changed:
        raise RunDirError(
            f"cannot resume {out} with a different configuration: {', '.join(changed)} differ from its "
            f"config.json (only {', '.join(RESUMABLE_CHANGES)} may change on resume)"
        )


# --------------------------------------------------------------------------- metrics.jsonl


class MetricsLog:
    """Append-only metrics.jsonl whose length at a checkpoint is recorded, so a resumed run can
    cut off the lines written after it (``truncate_to``; None starts a new log).

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
        >>> log = MetricsLog(path, None); log.write({"step": 1}); n = log.offset(); log.write({"step": 2}); log.close()
        >>> log = MetricsLog(path, n); log.close(); path.read_text()
        '{"step": 1}\\n'
    """

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


class LossWindow:
    """Sums of the loss terms since the last metrics record (tensors: no sync per step); saved in
    checkpoints, so that a resumed run writes the same records as an uninterrupted one.

    Examples:
        >>> import torch
        >>> w = LossWindow(); w.add({"loss": torch.tensor(1.0)}); w.add({"loss": torch.tensor(3.0)})
        >>> w.pop(), w.count
        ({'loss': 2.0}, 0)
    """

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


# --------------------------------------------------------------------------- train_state.pt


@dataclasses.dataclass
class TrainingState:
    """Everything a checkpoint saves and restores: the live training objects and the position.

    ``epoch_start_data_state`` is the state of ``data_generator`` at the start of the current
    epoch (a resumed run redraws that epoch's permutation and skips its first
    ``batch_in_epoch`` batches).

    Examples:
        >>> import torch
        >>> from stftblur.models import create_vae
        >>> model = create_vae()
        >>> opt = torch.optim.Adam(model.parameters())
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        >>> TrainingState(model, opt, sched, torch.Generator(), torch.Generator()).step
        0
    """

    model: VAE
    optimizer: torch.optim.Optimizer
    scheduler: Any
    data_generator: torch.Generator
    noise_generator: torch.Generator
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    window: LossWindow = dataclasses.field(default_factory=LossWindow)
    epoch_start_data_state: Optional[torch.Tensor] = None


def save_checkpoint(out_dir: PathLike, state: TrainingState, metrics_offset: int) -> None:
    """Write ``train_state.pt`` (atomically), then ``model.safetensors`` and ``model.json``.

    The inverse of :func:`restore_checkpoint`; ``metrics_offset`` is the length of
    metrics.jsonl that belongs to this checkpoint.

    Examples:
        >>> import tempfile, pathlib, torch
        >>> from stftblur.models import create_vae
        >>> model = create_vae()
        >>> opt = torch.optim.Adam(model.parameters())
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        >>> a = TrainingState(model, opt, sched, torch.Generator(), torch.Generator(), epoch=1, step=4)
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> save_checkpoint(d, a, metrics_offset=0)
        >>> b = TrainingState(create_vae(), opt, sched, torch.Generator(), torch.Generator())
        >>> restore_checkpoint(d, b), b.epoch, b.step
        (0, 1, 4)
    """
    out = Path(out_dir)
    data_state = state.epoch_start_data_state if state.epoch_start_data_state is not None else state.data_generator.get_state()
    checkpoint = {
        "format": CONFIG_FORMAT,
        "epoch": state.epoch,
        "batch_in_epoch": state.batch_in_epoch,
        "step": state.step,
        "model": {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()},
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "data_generator": data_state.clone(),
        "noise_generator": state.noise_generator.get_state(),
        "metrics_offset": metrics_offset,
        "log_window": {"sums": {k: v.detach().cpu() for k, v in state.window.sums.items()}, "count": state.window.count},
        "torch_version": torch.__version__,
    }
    atomic_write(out / STATE_FILE, lambda tmp: torch.save(checkpoint, tmp))
    position = {"epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch, "step": state.step}
    save_vae(state.model, out / "model.safetensors", position)


def restore_checkpoint(out_dir: PathLike, state: TrainingState) -> Optional[int]:
    """Load ``train_state.pt`` into ``state`` (model, optimizer, scheduler, both generators,
    position, loss window); returns the metrics.jsonl length that belongs to it, or None when
    the directory holds no checkpoint (``state`` is then unchanged).

    Reads checkpoints of every stftblur version (those before the loss window was saved
    restore an empty window). Tensors of the window are moved to the model's device.
    """
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return None
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    state.model.load_state_dict(checkpoint["model"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.scheduler.load_state_dict(checkpoint["scheduler"])
    state.data_generator.set_state(checkpoint["data_generator"])
    state.noise_generator.set_state(checkpoint["noise_generator"])
    state.epoch, state.batch_in_epoch, state.step = checkpoint["epoch"], checkpoint["batch_in_epoch"], checkpoint["step"]
    state.epoch_start_data_state = None
    state.window = LossWindow()
    saved_window = checkpoint.get("log_window")  # absent in checkpoints of stftblur before this field
    if saved_window is not None:
        device = next(state.model.parameters()).device
        state.window.sums = {k: v.to(device) for k, v in saved_window["sums"].items()}
        state.window.count = saved_window["count"]
    return int(checkpoint["metrics_offset"])


def write_summary(out_dir: PathLike, summary: Mapping[str, Any]) -> None:
    """Write summary.json (atomically): the mark of a complete run."""
    atomic_write_json(Path(out_dir) / SUMMARY_FILE, dict(summary))
