"""Test-set PSNR/SSIM of a VAE in the paper's convention, and prior samples."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import torch

from stftblur._atomic import PathLike
from stftblur._checks import check_choice, check_positive_int
from stftblur.evaluation import compute_metrics
from stftblur.metrics import RadialSpectrum, get_metric, plot_spectra, radial_power_spectrum, spectral_deficit
from stftblur.models.checkpoints import load_vae
from stftblur.models.vae import VAE
from stftblur.training.run_dir import RunDirError, load_run_config

__all__ = ["Z_MODES", "evaluate_checkpoint", "evaluate_reconstructions", "lpc_si_of", "sample_prior", "vae_figures"]

Z_MODES = ("sampled", "mean")


@torch.no_grad()
def evaluate_reconstructions(
    model: VAE,
    images: torch.Tensor,
    z: Sequence[str] = Z_MODES,
    batch_size: int = 50,
    seed: int = 0,
) -> Dict[str, float]:
    r"""Mean per-image PSNR and SSIM between inputs and their reconstructions.

    Convention:
        The paper's convention (author-code-notes.md): the binarized input against the RAW
        decoder output, max value 1, per image, averaged over all images; with ``z="sampled"``
        z is drawn from the posterior (what the authors' code reports), with ``z="mean"`` it
        is the posterior mean. Each is also reported on the output clamped to [0, 1] (what a
        PNG shows), keys with the suffix ``_clamped``. The noise of sampled z comes from a
        generator seeded with ``seed``, so the numbers are reproducible and evaluating never
        touches any other random state. Per-image values do not depend on ``batch_size``
        (except through the draw of the noise).

    Args:
        model: the VAE.
        images: (N, C, H, W) inputs on the model's device (binarized for the paper's protocol).
        z: any of ``"sampled"``, ``"mean"``.
        batch_size: images per forward pass (50, the paper's; larger batches are slower on a
            CPU because the decoder's intermediate products no longer fit in the cache).
        seed: seed of the posterior noise.

    Returns:
        ``{"psnr_sampled", "ssim_sampled", "psnr_sampled_clamped", "ssim_sampled_clamped",
        "psnr_mean", ..., "n"}`` for the requested modes.

    Examples:
        >>> import torch
        >>> from stftblur.models import create_vae
        >>> m = evaluate_reconstructions(create_vae(), torch.rand(8, 1, 28, 28), z=["mean"])
        >>> sorted(m)
        ['n', 'psnr_mean', 'psnr_mean_clamped', 'ssim_mean', 'ssim_mean_clamped']
    """
    modes = list(z)
    if not modes:
        raise ValueError("z must name at least one of ('sampled', 'mean')")
    for mode in modes:
        check_choice(mode, "z", Z_MODES)
    check_positive_int(batch_size, "batch_size")
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    device = images.device
    gen = torch.Generator(device=device).manual_seed(seed)
    sums: Dict[str, torch.Tensor] = {}
    try:
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size]
            mean, logvar = model.encode(x)
            for mode in modes:
                code = model.reparameterize(mean, logvar, gen) if mode == "sampled" else mean
                out = model.decode(code)
                for suffix, y in (("", out), ("_clamped", out.clamp(0.0, 1.0))):
                    for metric, values in compute_metrics(y, x, ("psnr", "ssim")).items():
                        key = f"{metric}_{mode}{suffix}"
                        v = values.double().sum()
                        sums[key] = sums[key] + v if key in sums else v
    finally:
        model.train(was_training)
    n = images.shape[0]
    result: Dict[str, float] = {k: float(v) / n for k, v in sums.items()}
    result["n"] = n
    return result


@torch.no_grad()
def sample_prior(model: VAE, n: int, seed: int = 0, batch_size: int = 50) -> torch.Tensor:
    """Raw decoder outputs of ``n`` codes z ~ N(0, I) drawn from a generator seeded with ``seed``.

    Examples:
        >>> from stftblur.models import create_vae
        >>> sample_prior(create_vae(), 5, seed=1).shape
        torch.Size([5, 1, 28, 28])
    """
    check_positive_int(n, "n")
    p = next(model.parameters())
    gen = torch.Generator(device=p.device).manual_seed(seed)
    z = torch.randn((n, model.config.latent_dim), generator=gen, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model.decode(z[i : i + batch_size]) for i in range(0, n, batch_size)])
    finally:
        model.train(was_training)


def lpc_si_of(images: torch.Tensor) -> Dict[str, float]:
    """Mean and std of :func:`stftblur.metrics.lpc_si` of images clamped to [0, 1].

    Examples:
        >>> import torch
        >>> r = lpc_si_of(torch.rand(2, 1, 28, 28))
        >>> sorted(r), r["n"]
        (['lpc_si_mean', 'lpc_si_std', 'n'], 2)
        >>> lpc_si_of(torch.full((3, 1, 28, 28), 2.0))  # flat after clamping: no local phase coherence
        {'lpc_si_mean': 0.0, 'lpc_si_std': 0.0, 'n': 3}
    """
    values = get_metric("lpc_si").fn(images.clamp(0.0, 1.0), None).double()
    return {
        "lpc_si_mean": float(values.mean()),
        "lpc_si_std": float(values.std()) if values.numel() > 1 else 0.0,
        "n": int(values.numel()),
    }


@torch.no_grad()
def vae_figures(
    model: VAE,
    images: torch.Tensor,
    n_show: int = 16,
    n_samples: int = 1000,
    seed: int = 0,
    batch_size: int = 50,
    title: Optional[str] = None,
) -> Dict[str, Any]:
    """What a person looks at after training: test inputs, reconstructions, prior samples, spectra.

    Convention:
        ``figure`` (:func:`stftblur.viz.image_panels`, 4 per row, each pixel 4x4): the first
        ``n_show`` test ``images``, their reconstructions (posterior mean z) and ``n_show``
        prior samples (z ~ N(0, I) from a generator seeded with ``seed``, :func:`sample_prior`),
        outputs clamped to [0, 1] as in every PNG of the project. ``spectrum``
        (:func:`stftblur.metrics.plot_spectra`): the radial power spectra of ``n_samples`` prior
        samples and of the reconstructions of every test image (both clamped) against that of
        the test images, with their ratio. ``spectral_deficit_db`` holds both sets'
        :func:`stftblur.metrics.spectral_deficit` (band 0.25-0.5 cycles per pixel, Hann
        window; positive: less high-frequency power than the test images, i.e. blurrier).

    Returns:
        ``{"figure", "spectrum", "spectral_deficit_db": {"prior_samples", "reconstructions"},
        "n_samples", "n_test"}``.

    Examples:
        >>> import torch
        >>> from stftblur.models import create_vae
        >>> r = vae_figures(create_vae(), (torch.rand(20, 1, 28, 28) > 0.5).float(), n_samples=30)
        >>> sorted(r["spectral_deficit_db"]), r["n_test"], [ax.get_title() for ax in r["figure"].axes][0]
        (['prior_samples', 'reconstructions'], 20, 'test inputs')
    """
    from stftblur.viz import image_panels

    check_positive_int(n_show, "n_show")
    check_positive_int(n_samples, "n_samples")
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    try:
        recon = RadialSpectrum()
        for i in range(0, images.shape[0], batch_size):
            recon.update(model.decode(model.encode(images[i : i + batch_size])[0]).clamp(0.0, 1.0), "reconstructions")
        k = min(n_show, images.shape[0])
        shown = model.decode(model.encode(images[:k])[0])
    finally:
        model.train(was_training)
    samples = sample_prior(model, max(n_samples, n_show), seed=seed, batch_size=batch_size).clamp(0.0, 1.0)
    sample_spectrum = radial_power_spectrum(samples[:n_samples])
    reference = radial_power_spectrum(images)
    spectra = {"prior samples": sample_spectrum, "reconstructions (mean z)": recon.compute()}
    figure = image_panels(
        {
            "test inputs": images[:k],
            "reconstructions\n(posterior mean z)": shown,
            "prior samples\n(z ~ N(0, I))": samples[:n_show],
        },
        nrow=4,
        scale=4,
        title=title,
    )
    spectrum = plot_spectra(spectra, reference, reference_label="test images", title=title)
    return {
        "figure": figure,
        "spectrum": spectrum,
        "spectral_deficit_db": {
            "prior_samples": spectral_deficit(sample_spectrum, reference).deficit_db,
            "reconstructions": spectral_deficit(spectra["reconstructions (mean z)"], reference).deficit_db,
        },
        "n_samples": n_samples,
        "n_test": int(images.shape[0]),
    }


def evaluate_checkpoint(
    checkpoint: PathLike,
    dataset: Optional[str] = None,
    data_dir: Optional[PathLike] = None,
    z: Sequence[str] = Z_MODES,
    batch_size: int = 50,
    seed: int = 0,
    n_images: Optional[int] = None,
    n_samples: int = 1000,
    device: Union[str, torch.device] = "cpu",
    download: bool = True,
) -> Dict[str, Any]:
    """Everything ``stftblur eval-vae`` reports for one checkpoint, as a JSON-serialisable dict.

    Loads the checkpoint (run directory, ``.safetensors`` or author ``.npz``), the test split of
    ``dataset`` (default: the dataset and input preprocessing of the run the checkpoint belongs
    to, else binarized MNIST), runs :func:`evaluate_reconstructions` on the first ``n_images``
    (all by default) and, with ``n_samples > 0``, :func:`lpc_si_of` on that many prior samples.

    Examples:
        >>> import tempfile, pathlib
        >>> from stftblur.data import DatasetNotFoundError
        >>> from stftblur.models import create_vae, save_vae
        >>> ckpt = save_vae(create_vae(), pathlib.Path(tempfile.mkdtemp()) / "model.safetensors")
        >>> try:
        ...     evaluate_checkpoint(ckpt, data_dir=tempfile.mkdtemp())
        ... except DatasetNotFoundError:
        ...     print("no MNIST there")
        no MNIST there
    """
    from stftblur.data import load_dataset

    path = Path(checkpoint)
    model = load_vae(path, map_location=device)
    run = _run_config(path)
    dataset = dataset or (run.dataset if run is not None else "mnist")
    binarize = run.binarize if run is not None else True
    test = load_dataset(dataset, "test", data_dir, binarize=binarize, download=download)
    images = test.images[:n_images] if n_images else test.images
    t0 = time.perf_counter()
    metrics = evaluate_reconstructions(model, images.to(device), z=z, batch_size=batch_size, seed=seed)
    result: Dict[str, Any] = {
        "checkpoint": str(path),
        "model": model.config.to_dict(),
        "dataset": dataset,
        "binarized": binarize,
        "data_source": str(test.source),
        "test_images": int(images.shape[0]),
        "convention": "test image (binarized at 0.5 unless the run was trained on grayscale) vs RAW decoder "
                      "output, and vs the output clamped to [0, 1]; max value 1; per-image PSNR/SSIM averaged; "
                      "SSIM 11x11 Gaussian sigma 1.5, valid (= tf.image.ssim)",
        "seed": seed,
        "metrics": metrics,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if n_samples > 0:
        result["prior_samples_lpc_si"] = lpc_si_of(sample_prior(model, n_samples, seed=seed))
    return result


def _run_config(checkpoint: Path) -> Optional[Any]:
    """The TrainConfig of the train-vae run a checkpoint belongs to, if any."""
    run = checkpoint if checkpoint.is_dir() else checkpoint.parent
    if not (run / "config.json").is_file():
        return None
    try:
        return load_run_config(run)
    except (RunDirError, ValueError, TypeError):
        return None
