"""Training and evaluating the paper's beta-VAE (the library behind ``stftblur train-vae``)."""

from stftblur.training.evaluation import evaluate_checkpoint, evaluate_reconstructions, lpc_si_of, sample_prior
from stftblur.training.export import make_grid, save_grid, save_images, save_png, to_uint8
from stftblur.training.objective import (
    DEFAULT_FREQ_WEIGHTS,
    FREQ_PRESETS,
    LOSSES,
    ObjectiveConfig,
    VAEObjective,
    kl_divergence,
)
from stftblur.training.system import tune_allocator
from stftblur.training.trainer import (
    RESUMABLE_CHANGES,
    RunDirError,
    TrainConfig,
    TrainResult,
    load_run_config,
    make_optimizer,
    make_train_config,
    prepare_run_dir,
    train_step,
    train_vae,
)

__all__ = [
    "DEFAULT_FREQ_WEIGHTS",
    "FREQ_PRESETS",
    "LOSSES",
    "ObjectiveConfig",
    "RESUMABLE_CHANGES",
    "RunDirError",
    "TrainConfig",
    "TrainResult",
    "VAEObjective",
    "evaluate_checkpoint",
    "evaluate_reconstructions",
    "kl_divergence",
    "load_run_config",
    "lpc_si_of",
    "make_optimizer",
    "make_train_config",
    "make_grid",
    "prepare_run_dir",
    "sample_prior",
    "save_grid",
    "save_images",
    "save_png",
    "to_uint8",
    "train_step",
    "tune_allocator",
    "train_vae",
]
