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
code that knows its format: a :func:`torch.save` archive of tensors and plain containers
(dict, list, tuple, str, int, float, bool, None), read back with ``torch.load(weights_only=True)``,
PyTorch's restricted unpickler, so a file from someone else cannot run code (one legacy value of
older files is read as a plain string first: :func:`_load_state_file`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch

from stftblur import __version__
from stftblur._atomic import PathLike, atomic_write, atomic_write_json, replace_outputs
from stftblur.errors import StftblurError
from stftblur.losses import _compiled
from stftblur.models.checkpoints import save_vae
from stftblur.models.vae import VAE
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
    "run_kernels",
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


def write_run_config(out_dir: PathLike, config: TrainConfig, kernels: str = "auto") -> None:
    """Write config.json (atomically): the config as given, the resolved objective, and the version.

    ``kernels`` is the run's choice of local-phase loss kernels (see :func:`run_kernels`);
    ``compiled_kernels`` records whether the compiled ones are in use.

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
            "compiled_kernels": kernels == "auto" and _compiled.available(),
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

    A run started on the pure-PyTorch path of the local-phase loss is continued on that path
    (:func:`run_kernels` says which; nothing here changes the process); a run started on the
    compiled kernels where they are not available here gets a warning.

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
    if run_kernels(out) == "auto" and not _compiled.available():
        say(f"warning: {out} ran with the compiled loss kernels, which are not available here "
            f"({_compiled.status()}): the continued run will differ from an uninterrupted one in float rounding")
    changed = [k for k in _config_changes(stored, config) if k not in RESUMABLE_CHANGES]
    if changed:
        raise RunDirError(
            f"cannot resume {out} with a different configuration: {', '.join(changed)} differ from its "
            f"config.json (only {', '.join(RESUMABLE_CHANGES)} may change on resume)"
        )


def run_kernels(out_dir: PathLike) -> str:
    """The local-phase loss kernels that the run in ``out_dir`` continues with: ``"auto"`` if
    it started on the compiled kernels, ``"reference"`` (the pure-PyTorch path) if not.

    Convention:
        Read from ``compiled_kernels`` in config.json; runs written before the compiled kernels
        existed have no such key and used the pure-PyTorch path. The result is the ``kernels``
        setting of the run's :class:`~stftblur.training.VAEObjective`, so that a resumed run
        rounds as it did before (a setting of that run, not of the process).

    Examples:
        >>> import tempfile, pathlib, json
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> write_run_config(d, TrainConfig(), kernels="reference")
        >>> run_kernels(d)
        'reference'
    """
    stored = json.loads((Path(out_dir) / CONFIG_FILE).read_text())
    return "auto" if stored.get("compiled_kernels", False) else "reference"


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
        "torch_version": str(torch.__version__),  # a plain str: torch.__version__ is a str subclass
    }
    atomic_write(out / STATE_FILE, lambda tmp: torch.save(checkpoint, tmp))
    position = {"epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch, "step": state.step}
    save_vae(state.model, out / "model.safetensors", position)


def restore_checkpoint(out_dir: PathLike, state: TrainingState) -> Optional[int]:
    """Load ``train_state.pt`` into ``state`` (model, optimizer, scheduler, both generators,
    position, loss window); returns the metrics.jsonl length that belongs to it, or None when
    the directory holds no checkpoint (``state`` is then unchanged). A complete run
    (summary.json) without its checkpoint is refused: it was not made to be continued.

    Reads checkpoints of every stftblur version (those before the loss window was saved
    restore an empty window). Tensors of the window are moved to the model's device.

    The file is read with PyTorch's restricted unpickler (``weights_only=True``): one that holds
    anything but tensors and plain containers (a pickle that would call a function, build an
    object, ...) is refused with a :class:`RunDirError` naming it, before ``state`` is changed.
    """
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        if (Path(out_dir) / SUMMARY_FILE).is_file():  # not a run that never reached a checkpoint
            raise RunDirError(
                f"{out_dir} is a complete run (summary.json) that no longer holds its {STATE_FILE} "
                f"(finished runs of evals/runs keep config, metrics, summary and weights only): it cannot "
                f"be resumed or extended; train a new run instead"
            )
        return None
    checkpoint = _load_state_file(path)
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


# Keys every train_state.pt holds ("log_window" is absent in those of the oldest versions).
_STATE_KEYS = ("epoch", "batch_in_epoch", "step", "model", "optimizer", "scheduler", "data_generator",
               "noise_generator", "metrics_offset")
# The one value of older train_state.pt files that weights_only=True refuses: "torch_version"
# was torch.__version__, pickled as an instance of this str subclass.
_LEGACY_VERSION_GLOBAL = "torch.torch_version TorchVersion"
_PUT_OPS = ("BINPUT", "LONG_BINPUT", "MEMOIZE")


def _legacy_version_as_str(pkl: bytes) -> bytes:
    """``pkl`` (a data.pkl) with the construction of a ``TorchVersion`` from a string replaced
    by the string itself; unchanged unless it has exactly the shape torch.save writes for it.

    The pickle is only parsed (:func:`pickletools.genops` executes nothing); what comes out
    still goes through the restricted unpickler, so this can make a file loadable but never
    lets anything else through.
    """
    try:
        ops = list(pickletools.genops(pkl))
    except Exception:  # a malformed pickle: left to the restricted unpickler to refuse
        return pkl
    out, start = [], 0
    for i, (op, arg, pos) in enumerate(ops):
        if op.name != "GLOBAL" or arg != _LEGACY_VERSION_GLOBAL:
            continue
        # GLOBAL [put] <str> [put] TUPLE1 [put] NEWOBJ  ->  <str>
        shape = [o.name for o, _, _ in ops[i + 1 : i + 9]]
        names = [n for n in shape if n not in _PUT_OPS]
        if names[:3] not in (["BINUNICODE", "TUPLE1", "NEWOBJ"], ["SHORT_BINUNICODE", "TUPLE1", "NEWOBJ"]):
            return pkl
        k_str = i + 1 + shape.index(names[0])
        k_new = i + 1 + shape.index("NEWOBJ")
        out += [pkl[start:pos], pkl[ops[k_str][2] : ops[k_str + 1][2]]]
        start = ops[k_new + 1][2]
    return b"".join(out + [pkl[start:]]) if out else pkl


def _without_legacy_version(data: bytes) -> bytes:
    """The bytes of a torch.save archive with :func:`_legacy_version_as_str` applied to its
    data.pkl (a new archive in memory); ``data`` itself when there is nothing to replace."""
    if b"torch_version\nTorchVersion" not in data:  # archive members are stored uncompressed
        return data
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        infos = src.infolist()
        if any(i.compress_type != zipfile.ZIP_STORED for i in infos):
            return data
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as dst:
            for info in infos:
                member = src.read(info)
                if info.filename.endswith("/data.pkl") and info.filename.count("/") == 1:
                    member = _legacy_version_as_str(member)
                dst.writestr(info.filename, member)
    return buf.getvalue()


def _unpickler_reason(error: Exception) -> str:
    """The reason in an error of torch.load(weights_only=True), without its advice."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    elif text.startswith("Weights only load failed"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    for advice in ("Please use `torch.serialization", "Check the documentation"):
        text = text.split(advice, 1)[0]
    return " ".join(text.split()) or type(error).__name__


def _load_state_file(path: Path) -> Dict[str, Any]:
    """The dict in ``train_state.pt``, read with ``torch.load(weights_only=True)``.

    Files written by earlier stftblur code hold ``torch_version`` as an instance of PyTorch's
    ``TorchVersion``, which that loader refuses; it is read as the plain string it is
    (:func:`_without_legacy_version`), for this call only: no process-wide allowlist
    (``torch.serialization.add_safe_globals`` and its ``safe_globals`` context manager change a
    module-level set that every thread's torch.load reads).
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RunDirError(f"cannot read {path}: {e}") from e
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise RunDirError(f"{path} is not a train-vae checkpoint (not a torch.save zip archive); not loading it")
    try:
        source = _without_legacy_version(data)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise RunDirError(f"cannot read {path}: {e}") from None
    try:
        checkpoint = torch.load(io.BytesIO(source), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise RunDirError(
            f"refusing to load {path}: it holds more than the tensors and plain containers of a train-vae "
            f"checkpoint, and it is only read with torch.load(weights_only=True) ({_unpickler_reason(e)})"
        ) from None
    except Exception as e:  # a damaged archive (RuntimeError from PyTorch's zip reader, ...)
        raise RunDirError(f"cannot read {path}: {' '.join(str(e).split()) or type(e).__name__}") from None
    missing = [k for k in _STATE_KEYS if k not in checkpoint] if isinstance(checkpoint, dict) else list(_STATE_KEYS)
    if missing or checkpoint.get("format") != CONFIG_FORMAT:
        raise RunDirError(f"{path} is not a train-vae checkpoint (format {checkpoint.get('format') if isinstance(checkpoint, dict) else None!r}, missing {missing})")
    return checkpoint


def write_summary(out_dir: PathLike, summary: Mapping[str, Any]) -> None:
    """Write summary.json (atomically): the mark of a complete run."""
    atomic_write_json(Path(out_dir) / SUMMARY_FILE, dict(summary))
