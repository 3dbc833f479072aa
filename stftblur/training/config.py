"""TrainConfig: everything that defines a train-vae run (written to the run's config.json)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional

from stftblur._checks import check_choice, check_positive_float, check_positive_int
from stftblur.data import DATASETS
from stftblur.models.vae import VAEConfig
from stftblur.training.objective import ObjectiveConfig

__all__ = ["TrainConfig", "make_train_config"]


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
