"""Trained checkpoints shipped with the project, found by name (``load_vae("ours")``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

__all__ = ["models_dir", "shipped_models", "shipped_checkpoint", "shipped_cards"]


def models_dir() -> Optional[Path]:
    """The folder of shipped models: ``$STFTBLUR_MODELS``, else the installed package's, else the checkout's.

    Convention:
        Each shipped model is a sub-folder ``<name>/`` holding ``model.safetensors`` and its
        model card ``README.md`` (``card.json`` for the numbers). Their home is ``models/`` at
        the root of the repository; a wheel carries them as ``stftblur/_shipped/`` (setup.py's
        build step copies them), so an installed package finds them from any folder. Looked at,
        in order: ``$STFTBLUR_MODELS`` when set (returned as given), ``stftblur/_shipped`` of
        the installed package, ``models/`` of the source checkout the package is imported from
        (an editable install or a ``PYTHONPATH`` checkout, recognised by its ``pyproject.toml``).
        Returns None when none exists.

    Examples:
        >>> d = models_dir()
        >>> d is None or d.is_dir()
        True
    """
    env = os.environ.get("STFTBLUR_MODELS")
    if env:
        return Path(env)
    package = Path(__file__).resolve().parents[1]
    installed = package / "_shipped"
    if installed.is_dir():
        return installed
    checkout = package.parent / "models"
    if checkout.is_dir() and (package.parent / "pyproject.toml").is_file():
        return checkout
    return None


def _slug(name: str) -> str:
    return name.replace("+", "-")


def shipped_models() -> Dict[str, Path]:
    """Name -> weights file of every shipped model (empty when there is no models folder).

    Convention:
        Names are the folder names; a ``+`` in a loss name is written ``-`` in its folder
        (``dft+ssim`` lives in ``dft-ssim/``) and both spellings resolve.

    Examples:
        >>> all(p.name == "model.safetensors" for p in shipped_models().values())
        True
    """
    root = models_dir()
    if root is None or not root.is_dir():
        return {}
    return {d.name: d / "model.safetensors" for d in sorted(root.iterdir()) if (d / "model.safetensors").is_file()}


def shipped_checkpoint(name: str) -> Optional[Path]:
    """The weights file of the shipped model ``name``, or None when there is none by that name.

    Examples:
        >>> shipped_checkpoint("no-such-model") is None
        True
    """
    return shipped_models().get(_slug(str(name)))


def shipped_cards() -> Dict[str, Dict[str, Any]]:
    """Name -> the numbers of every shipped model's card (``card.json``), for listing and comparing.

    Convention:
        A card holds at least ``loss`` and ``command`` (how the model was trained) and
        ``test_set``: the whole MNIST test set measured as ``evals/table1.py`` measures every
        Table 1 row (``psnr_sampled`` / ``ssim_sampled``: sampled z, raw output, the paper's
        convention; ``psnr_mean_clamped`` / ``ssim_mean_clamped``; ``lpc_si_samples`` and
        ``spectral_deficit_samples_db`` of prior samples; ``kl_test_nats``). The human-readable
        card is ``README.md`` beside it. A model without ``card.json`` maps to ``{}``.

    Examples:
        >>> cards = shipped_cards()
        >>> sorted(cards) == sorted(shipped_models())
        True
    """
    out: Dict[str, Dict[str, Any]] = {}
    for name, weights in shipped_models().items():
        card = weights.parent / "card.json"
        out[name] = json.loads(card.read_text()) if card.is_file() else {}
    return out
