"""Weights of the paper's VAE on disk: the project's safetensors checkpoints (:func:`save_vae`,
:func:`load_vae`, :func:`resolve_checkpoint`) and the authors' released weights converted to
``.npz`` (:func:`load_author_checkpoint`).

Nothing here unpickles: safetensors holds tensors and a JSON string, ``.npz`` files are read
with :func:`numpy.load` (``allow_pickle`` off).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np
import torch

from stftblur._atomic import PathLike, atomic_write, atomic_write_json
from stftblur.errors import StftblurError
from stftblur.models.vae import VAE, VAEConfig, create_vae  # noqa: F401 (create_vae: the doctests)

__all__ = ["CheckpointError", "load_author_checkpoint", "load_vae", "resolve_checkpoint", "save_vae"]

CHECKPOINT_FORMAT = "stftblur-vae"


class CheckpointError(StftblurError, ValueError):
    """A checkpoint that cannot be loaded (missing, unreadable, or not this model's weights).

    Examples:
        >>> try:
        ...     load_vae("no/such/checkpoint.safetensors")
        ... except CheckpointError as e:
        ...     print(e)
        checkpoint no/such/checkpoint.safetensors does not exist
    """


CHECKPOINT_VERSION = 1
_METADATA_KEY = "stftblur_config"


# --------------------------------------------------------------------------- author weights

_AUTHOR_KEYS = (
    "encoder.0.kernel",
    "encoder.0.bias",
    "encoder.1.kernel",
    "encoder.1.bias",
    "encoder.2.kernel",
    "encoder.2.bias",
    "decoder.0.kernel",
    "decoder.0.bias",
    "decoder.1.kernel",
    "decoder.1.bias",
    "decoder.2.kernel",
    "decoder.2.bias",
    "decoder.3.kernel",
    "decoder.3.bias",
)


def author_state_dict(arrays: Mapping[str, np.ndarray]) -> Dict[str, torch.Tensor]:
    """Convert the authors' TensorFlow weights to this model's ``state_dict``.

    TensorFlow layouts: Conv2D kernel (h, w, in, out) -> (out, in, h, w); Conv2DTranspose kernel
    (h, w, out, in) -> (in, out, h, w) (neither flips the kernel); Dense kernel (in, out) ->
    (out, in). Dense layers need no reordering because the model flattens in NHWC order.

    Examples:
        >>> import numpy as np
        >>> arrays = {f"{k}": v.numpy() for k, v in author_like_arrays(create_vae()).items()}
        >>> sorted(author_state_dict(arrays))[:2]
        ['decoder.0.bias', 'decoder.0.weight']
    """
    missing = [k for k in _AUTHOR_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"author checkpoint lacks {missing}; expected the keys {list(_AUTHOR_KEYS)}")
    out: Dict[str, torch.Tensor] = {}
    for key in _AUTHOR_KEYS:
        a = torch.from_numpy(np.asarray(arrays[key], dtype=np.float32).copy())
        layer, kind = key.rsplit(".", 1)
        if kind == "bias":
            out[f"{layer}.bias"] = a
        elif a.dim() == 2:  # Dense (in, out)
            out[f"{layer}.weight"] = a.t().contiguous()
        elif a.dim() == 4:  # Conv2D (h, w, in, out) and Conv2DTranspose (h, w, out, in) alike
            out[f"{layer}.weight"] = a.permute(3, 2, 0, 1).contiguous()
        else:
            raise ValueError(f"author checkpoint entry {key!r} has shape {tuple(a.shape)}; expected 2 or 4 dims")
    return out


def author_like_arrays(model: VAE) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`author_state_dict`: this model's weights in the authors' layouts.

    Examples:
        >>> author_like_arrays(create_vae())["encoder.0.kernel"].shape
        torch.Size([3, 3, 1, 32])
    """
    out = {}
    for key, t in model.state_dict().items():
        layer, kind = key.rsplit(".", 1)
        if kind == "bias":
            out[f"{layer}.bias"] = t
        elif t.dim() == 2:
            out[f"{layer}.kernel"] = t.t()
        else:
            out[f"{layer}.kernel"] = t.permute(2, 3, 1, 0)
    return out


def load_author_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> VAE:
    """Load one of the authors' released checkpoints converted to ``.npz`` (TensorFlow layouts).

    The latent size and channels are read from the arrays' shapes. The model is returned in eval
    mode, with ``config.name`` set to ``"author:<file stem>"``.

    Args:
        path: an ``.npz`` file with the keys ``encoder.0.kernel`` ... ``decoder.3.bias``.
        map_location: device of the returned model.

    Examples:
        >>> import tempfile, pathlib, numpy as np
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.npz"
        >>> np.savez(p, **{k: v.numpy() for k, v in author_like_arrays(create_vae()).items()})
        >>> load_author_checkpoint(p).config.latent_dim
        2
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"author checkpoint {path} does not exist")
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as e:  # zipfile/pickle errors are not informative on their own
        raise CheckpointError(f"{path} is not a readable .npz file: {e}") from e
    try:
        state = author_state_dict(arrays)
        e1 = state["encoder.0.weight"].shape[0]
        e2 = state["encoder.1.weight"].shape[0]
        in_ch = state["encoder.0.weight"].shape[1]
        latent = state["decoder.0.weight"].shape[1]
        d1 = state["decoder.1.weight"].shape[1]
        d2 = state["decoder.2.weight"].shape[1]
        seed = int(round((state["decoder.0.weight"].shape[0] / d2) ** 0.5))
        config = VAEConfig(
            name=f"author:{path.stem}",
            image_size=4 * seed,
            in_channels=in_ch,
            latent_dim=latent,
            encoder_channels=(e1, e2),
            decoder_channels=(d1, d2),
        )
        model = VAE(config)
        model.load_state_dict(state)
    except (ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"{path} does not hold the paper's VAE weights: {e}") from e
    return model.to(map_location).eval()


# --------------------------------------------------------------------------- project checkpoints


def save_vae(model: VAE, path: PathLike, metadata: Optional[Mapping[str, Any]] = None) -> Path:
    """Save weights as safetensors plus a JSON sidecar with the config, both written atomically.

    Writes ``path`` (``.safetensors``; the config is also stored in its metadata, so the file
    alone is enough) and ``path`` with the suffix ``.json`` holding
    ``{"format", "version", "model": config, **metadata}``.

    Args:
        model: the model.
        path: destination ending in ``.safetensors``.
        metadata: extra JSON-serialisable fields for the sidecar (epoch, step, training config...).

    Returns:
        The safetensors path.

    Examples:
        >>> import tempfile, pathlib
        >>> p = save_vae(create_vae(), pathlib.Path(tempfile.mkdtemp()) / "model.safetensors")
        >>> load_vae(p).config == create_vae().config
        True
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path must end in .safetensors, got {str(path)!r}")
    info = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model": model.config.to_dict()}
    info.update(metadata or {})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {_METADATA_KEY: json.dumps({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "model": info["model"]})}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    atomic_write_json(path.with_suffix(".json"), info)
    return path


def resolve_checkpoint(path: PathLike) -> Path:
    """The weights file a checkpoint argument stands for.

    Accepts a run directory (its ``model.safetensors``), a ``.safetensors`` file, its ``.json``
    sidecar, an author ``.npz`` file, or the name of a model shipped in ``models/`` (see
    :func:`stftblur.models.shipped_models`; a path that exists wins over a name).

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = save_vae(create_vae(), d / "model.safetensors")
        >>> resolve_checkpoint(d).name
        'model.safetensors'
    """
    p = Path(path)
    if not p.exists() and len(p.parts) == 1:
        from stftblur.models.shipped import shipped_checkpoint, shipped_models

        found = shipped_checkpoint(str(path))
        if found is not None:
            return found
        names = ", ".join(shipped_models()) or "none found"
        raise CheckpointError(f"checkpoint {p} is neither a file, a directory nor a shipped model name (shipped: {names})")
    if p.is_dir():
        candidate = p / "model.safetensors"
        if candidate.is_file():
            return candidate
        raise CheckpointError(
            f"checkpoint directory {p} holds no model.safetensors (a finished or checkpointed "
            f"train-vae run directory has one)"
        )
    if p.suffix == ".json" and p.with_suffix(".safetensors").is_file():
        return p.with_suffix(".safetensors")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    if p.suffix not in (".safetensors", ".npz"):
        raise CheckpointError(f"checkpoint must be a run directory, a .safetensors or an author .npz file, got {p}")
    return p


def load_vae(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> VAE:
    """Load a model saved by :func:`save_vae`, a train-vae run directory or an author ``.npz``.

    Returns the model in eval mode on ``map_location``.

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = save_vae(create_vae(latent_dim=4), d / "model.safetensors")
        >>> load_vae(d).config.latent_dim
        4
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = resolve_checkpoint(path)
    if p.suffix == ".npz":
        return load_author_checkpoint(p, map_location)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(p))
    except Exception as e:
        raise CheckpointError(f"{p} is not a readable safetensors file: {e}") from e
    if _METADATA_KEY in meta:
        info = json.loads(meta[_METADATA_KEY])
    elif p.with_suffix(".json").is_file():
        info = json.loads(p.with_suffix(".json").read_text())
    else:
        raise CheckpointError(f"{p} carries no stftblur config (metadata key {_METADATA_KEY!r}) and has no .json sidecar")
    if info.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p} has format {info.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    try:
        model = VAE(VAEConfig.from_dict(info["model"]))
        model.load_state_dict(state)
    except (ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"{p} does not match its stored config: {e}") from e
    return model.to(map_location).eval()
