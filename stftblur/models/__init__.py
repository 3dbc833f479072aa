"""Models: the paper's MNIST beta-VAE."""

from stftblur.models.vae import VAE, VAE_CONFIGS, VAEConfig, VAEOutput, create_vae
from stftblur.models.checkpoints import CheckpointError, load_author_checkpoint, load_vae, resolve_checkpoint, save_vae
from stftblur.models.shipped import models_dir, shipped_cards, shipped_checkpoint, shipped_models

__all__ = [
    "VAE",
    "VAE_CONFIGS",
    "VAEConfig",
    "CheckpointError",
    "VAEOutput",
    "create_vae",
    "load_author_checkpoint",
    "load_vae",
    "resolve_checkpoint",
    "save_vae",
    "models_dir",
    "shipped_cards",
    "shipped_checkpoint",
    "shipped_models",
]
