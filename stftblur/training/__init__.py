"""Training and evaluating the paper's beta-VAE (the library behind ``stftblur train-vae``).

:mod:`~stftblur.training.config` (what a run is), :mod:`~stftblur.training.objective` (what it
minimises), :mod:`~stftblur.training.run_dir` (where it is stored, how it resumes),
:mod:`~stftblur.training.trainer` (the loop) and :mod:`~stftblur.training.evaluation` (its
test metrics and prior samples).
"""

from stftblur.training.config import TrainConfig, make_train_config
from stftblur.training.evaluation import (
    evaluate_checkpoint,
    evaluate_reconstructions,
    lpc_si_of,
    sample_prior,
    vae_figures,
)
from stftblur.training.objective import (
    DEFAULT_FREQ_WEIGHTS,
    FREQ_PRESETS,
    LOSSES,
    ObjectiveConfig,
    VAEObjective,
    kl_divergence,
)
from stftblur.training.run_dir import RESUMABLE_CHANGES, RunDirError, load_run_config, prepare_run_dir
from stftblur.training.trainer import TrainResult, make_optimizer, train_step, train_vae

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
    "prepare_run_dir",
    "sample_prior",
    "train_step",
    "train_vae",
    "vae_figures",
]

