"""``stftblur train-vae``, ``sample``, ``eval-vae`` and ``demo``: the paper's MNIST beta-VAE.

The commands only parse options and print; the work is done by :mod:`stftblur.training`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import click

from stftblur.errors import require_extra
from stftblur.losses import LocalPhaseConfig
from stftblur.training.objective import FREQ_PRESETS, LOSSES
from stftblur_cli._common import CliError, command, library_errors as _library_errors, resolve_device

# The choices of the frequency-term options come from LocalPhaseConfig (their one home).
_FREQ_CHOICES = LocalPhaseConfig.CHOICES


class _Choice(click.Choice):
    """click.Choice whose error is one line (no usage block)."""

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            name = param.opts[0] if param is not None and param.opts else "value"
            raise CliError(f"{name} must be one of {', '.join(self.choices)}, got {value!r}") from None


def _setup_process(threads: Optional[int]) -> None:
    """Process-wide settings: --threads, and the allocator setting that spares each training step
    thousands of page faults (stftblur_cli._process.tune_allocator)."""
    from stftblur_cli._process import tune_allocator

    tune_allocator()
    if threads is not None:
        import torch

        if threads < 1:
            raise CliError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)




# --------------------------------------------------------------------------- train-vae


def _as_flags(message: str, options: Dict[str, Any]) -> str:
    """Name options as on the command line: 'window_size ...' -> '--window-size ...'."""
    first, _, rest = message.partition(" ")
    if first in options:
        return f"--{first.replace('_', '-')} {rest}"
    return message



def _objective_options(f: Any) -> Any:
    options = [
        click.option("--loss", type=_Choice(LOSSES), default=None,
                     help="Reconstruction loss (Table 1 of the paper, plus ffl).  [default: ours]"),
        click.option("--preset", type=_Choice(FREQ_PRESETS), default=None,
                     help="Frequency term of dft+ssim/ours: what the authors' code computes, what the paper's "
                          "text says, or this project's LocalPhaseLoss defaults.  [default: paper-code]"),
        click.option("--beta", type=float, default=None, help="Weight of the KL term.  [default: 0.005]"),
        click.option("--pixel-weight", type=float, default=None,
                     help="Weight of the l2/l1 term (l2, l1, ffl).  [default: 1]"),
        click.option("--ssim-weight", type=float, default=None,
                     help="The SSIM term is -ssim_weight * SSIM (ssim, dft+ssim, ours).  [default: 500]"),
        click.option("--freq-weight", type=float, default=None,
                     help="Weight of the frequency term (dft+ssim, ours).  [default: 0.0015 for the paper presets, "
                          "5.0 for --preset default]"),
        click.option("--phase-weight", type=float, default=None, help="Phase coefficient of the frequency term."),
        click.option("--amplitude-weight", type=float, default=None,
                     help="Amplitude coefficient of the frequency term."),
        click.option("--window-size", type=int, default=None, help="STFT window side (dft+ssim: the image size)."),
        click.option("--stride", type=int, default=None, help="Step between STFT windows."),
        click.option("--window", type=_Choice(_FREQ_CHOICES["window"]), default=None,
                     help="Analysis window of the 2-D transform."),
        click.option("--phase-distance", type=_Choice(_FREQ_CHOICES["phase_distance"]), default=None,
                     help="How phases are compared."),
        click.option("--frequency-weighting", type=_Choice(_FREQ_CHOICES["frequency_weighting"]), default=None,
                     help="Weight of each coefficient."),
        click.option("--aggregate", type=_Choice(_FREQ_CHOICES["aggregate"]), default=None,
                     help="Combine the coefficients of one image by mean or sum."),
        click.option("--normalized/--no-normalized", default=None,
                     help="Divide the transform by the window's sum."),
        click.option("--transform", type=_Choice(_FREQ_CHOICES["transform"]), default=None,
                     help="2-D STFT, or the authors' 1-D FFT along patch rows."),
        click.option("--phase-offset", type=float, default=None,
                     help="Added to the real part before taking raw phases (the code: 1e-6)."),
        click.option("--ffl-weight", type=float, default=None, help="Weight of the focal frequency loss (ffl).  [default: 1]"),
        click.option("--ffl-alpha", type=float, default=None, help="Focal frequency loss alpha (ffl).  [default: 1]"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@command("train-vae")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run directory (refused when it exists and is not empty, unless --resume or --force).")
@_objective_options
@click.option("--dataset", type=_Choice(("mnist", "fashion-mnist")), default=None, help="[default: mnist]")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Directory with the four IDX files (default: $STFTBLUR_DATA, the user cache, a download).")
@click.option("--grayscale", is_flag=True, default=False, help="Keep inputs grayscale instead of binarizing at 0.5.")
@click.option("--no-download", is_flag=True, default=False, help="Never download the dataset.")
@click.option("--epochs", type=int, default=None, help="[default: 50]")
@click.option("--batch-size", type=int, default=None, help="[default: 50]")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps in total.")
@click.option("--train-size", type=int, default=None, help="Train on the first N training images only.")
@click.option("--eval-size", type=int, default=None, help="Evaluate on the first N test images only.")
@click.option("--lr-min", type=float, default=None, help="Cyclical LR minimum.  [default: 1e-4]")
@click.option("--lr-max", type=float, default=None, help="Cyclical LR maximum.  [default: 1e-3]")
@click.option("--lr-step-size", type=int, default=None, help="Steps per half cycle.  [default: 2000]")
@click.option("--latent-dim", type=int, default=None, help="[default: 2]")
@click.option("--init", type=_Choice(("keras", "torch")), default=None,
              help="Weight initialisation (keras: Glorot-uniform, zero bias).  [default: keras]")
@click.option("--seed", type=int, default=None, help="[default: 0]")
@click.option("--device", type=_Choice(("auto", "cpu", "cuda")), default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice).")
@click.option("--log-every", type=int, default=None, help="Steps between metrics.jsonl records.  [default: 100]")
@click.option("--n-samples", type=int, default=None, help="Prior samples written at the end.  [default: 64]")
@click.option("--n-export", type=int, default=None,
              help="Test reconstructions written to recon/ and reference/.  [default: 1000]")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where its last checkpoint left it.")
@click.option("--force", is_flag=True, help="Replace the train-vae run in --out.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@_library_errors
def train_vae_cmd(out: Path, device: str, threads: Optional[int], resume: bool, force: bool,
                  progress: Optional[bool], grayscale: bool, no_download: bool, data_dir: Optional[Path],
                  **options: Any) -> None:
    """Train the paper's MNIST beta-VAE with one reconstruction loss.

    Defaults reproduce the authors' released code: beta 0.005, SSIM weight 500, frequency
    coefficient 0.0015 with amplitude 0.1 / phase 0.9, window 16, stride 4 (paper-code preset),
    Adam with a triangular2 cyclical learning rate 1e-4..1e-3 (step size 2000), 50 epochs,
    batch 50, inputs binarized at 0.5, the raw decoder output in every loss. See docs/vae.md.
    """
    from stftblur.training import load_run_config, make_train_config, train_vae

    _setup_process(threads)
    options["device"] = resolve_device(device)
    if data_dir is not None:
        options["data_dir"] = str(data_dir)
    if grayscale:
        options["binarize"] = False
    base = None
    if resume and (out / "config.json").is_file():
        base = load_run_config(out)
    try:
        config = make_train_config(base, **options)
    except (ValueError, TypeError) as e:
        raise CliError(_as_flags(str(e), options)) from None
    show = sys.stderr.isatty() if progress is None else progress
    result = train_vae(config, out, resume=resume, force=force, progress=show, download=not no_download, log=lambda m: click.echo(m, err=True))
    m = result.metrics
    click.echo(
        f"{out}: {result.step} steps, test PSNR {m['psnr_sampled']:.3f} dB / SSIM {m['ssim_sampled']:.4f} "
        f"(sampled z, raw output); mean z: {m['psnr_mean']:.3f} dB / {m['ssim_mean']:.4f}"
    )


# --------------------------------------------------------------------------- sample


def _prepare_out(out: Path, force: bool, owned: List[str]) -> None:
    """Refuse a non-empty output directory unless --force and it holds only our outputs."""
    from stftblur._atomic import replace_outputs

    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise CliError(f"--out {out} already exists and is not empty; pass --force to replace its outputs or choose another directory")
    try:
        replace_outputs(out, owned)
    except FileExistsError as e:
        raise CliError(f"--out: {e}; not replacing anything") from None


@command("sample")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True,
              help="A train-vae run directory, a .safetensors checkpoint, an author .npz file, or the name of a model shipped in models/ (e.g. ours).")
@click.option("--n", "n", type=int, default=64, show_default=True, help="Number of prior samples.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of z ~ N(0, I).")
@click.option("--nrow", type=int, default=8, show_default=True, help="Images per grid row.")
@click.option("--device", type=_Choice(("auto", "cpu", "cuda")), default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice).")
@click.option("--force", is_flag=True, help="Replace a previous sample output in --out.")
@_library_errors
def sample_cmd(checkpoint: Path, n: int, out: Path, seed: int, nrow: int, device: str, threads: Optional[int],
               force: bool) -> None:
    """Decode N codes drawn from the prior: OUT/samples.png (grid) and OUT/samples/sample-NNNNN.png.

    Pixels are round(clamp(raw output, 0, 1) * 255): the raw decoder output the model was trained
    and evaluated on, clamped. The authors' code shows sigmoid(output) instead, which turns the
    background (raw output near 0) into mid-gray 0.5.
    """
    from stftblur.models import load_vae
    from stftblur.io import save_grid, save_images
    from stftblur.training import sample_prior

    if n < 1:
        raise CliError(f"--n must be >= 1, got {n}")
    if nrow < 1:
        raise CliError(f"--nrow must be >= 1, got {nrow}")
    _setup_process(threads)
    model = load_vae(checkpoint, map_location=resolve_device(device))
    _prepare_out(out, force, ["samples.png", "samples", "sample.json"])
    images = sample_prior(model, n, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    save_grid(images[: min(n, 256)], out / "samples.png", nrow=nrow)
    save_images(images, out / "samples", prefix="sample")
    (out / "sample.json").write_text(json.dumps(
        {"checkpoint": str(checkpoint), "model": model.config.to_dict(), "n": n, "seed": seed,
         "pixels": "round(clamp(raw, 0, 1) * 255)"}, indent=2) + "\n")
    click.echo(f"wrote {n} samples to {out / 'samples'} and the grid {out / 'samples.png'}")


# --------------------------------------------------------------------------- eval-vae


def _evaluate_checkpoint(checkpoint: Path, dataset: Optional[str], data_dir: Optional[Path], z: str,
                         batch_size: int, seed: int, n_images: Optional[int], n_samples: int,
                         device: str, download: bool = True) -> Dict[str, Any]:
    from stftblur.training import evaluate_checkpoint

    modes = ("sampled", "mean") if z == "both" else (z,)
    return evaluate_checkpoint(checkpoint, dataset=dataset, data_dir=data_dir, z=modes, batch_size=batch_size,
                               seed=seed, n_images=n_images, n_samples=n_samples, device=device, download=download)


def _print_table(result: Dict[str, Any]) -> None:
    m = result["metrics"]
    click.echo(f"{result['checkpoint']}  ({result['dataset']} test set, {result['test_images']} images)")
    click.echo(f"  {'z':<8} {'output':<8} {'PSNR (dB)':>10} {'SSIM':>8}")
    for mode in ("sampled", "mean"):
        for suffix, label in (("", "raw"), ("_clamped", "clamped")):
            key = f"psnr_{mode}{suffix}"
            if key in m:
                note = "   <- the paper's convention" if (mode, label) == ("sampled", "raw") else ""
                click.echo(f"  {mode:<8} {label:<8} {m[key]:>10.3f} {m[f'ssim_{mode}{suffix}']:>8.4f}{note}")
    lpc = result.get("prior_samples_lpc_si")
    if lpc is not None:
        click.echo(f"  LPC-SI of {lpc['n']} prior samples (clamped): {lpc['lpc_si_mean']:.4f} +- {lpc['lpc_si_std']:.4f}")


@command("eval-vae")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True,
              help="A train-vae run directory, a .safetensors checkpoint, an author .npz file, or the name of a model shipped in models/ (e.g. ours).")
@click.option("--dataset", type=_Choice(("mnist", "fashion-mnist")), default=None,
              help="Test set (default: the run's dataset, else mnist).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Directory with the IDX files.")
@click.option("--z", "z", type=_Choice(("sampled", "mean", "both")), default="both", show_default=True,
              help="Latent code: a posterior sample (the paper's convention), the posterior mean, or both.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results to this JSON file.")
@click.option("--batch-size", type=int, default=50, show_default=True, help="Images per forward pass.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the posterior and prior noise.")
@click.option("--n-images", type=int, default=None, help="Evaluate the first N test images only.")
@click.option("--n-samples", type=int, default=1000, show_default=True,
              help="Prior samples for LPC-SI (0 to skip).")
@click.option("--device", type=_Choice(("auto", "cpu", "cuda")), default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice).")
@click.option("--no-download", is_flag=True, default=False, help="Never download the dataset.")
@_library_errors
def eval_vae_cmd(checkpoint: Path, dataset: Optional[str], data_dir: Optional[Path], z: str,
                 json_path: Optional[Path], batch_size: int, seed: int, n_images: Optional[int],
                 n_samples: int, device: str, threads: Optional[int], no_download: bool) -> None:
    """Test-set PSNR/SSIM of a VAE checkpoint in the paper's convention (binarized input vs RAW
    output), with sampled z and/or the posterior mean, raw and clamped; LPC-SI of --n-samples
    prior samples (clamped to [0, 1])."""
    if batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {batch_size}")
    if n_images is not None and n_images < 1:
        raise CliError(f"--n-images must be >= 1, got {n_images}")
    _setup_process(threads)
    result = _evaluate_checkpoint(checkpoint, dataset, data_dir, z, batch_size, seed, n_images, n_samples,
                                 resolve_device(device), download=not no_download)
    _print_table(result)
    if json_path is not None:
        from stftblur._atomic import atomic_write_json

        atomic_write_json(json_path, result)
        click.echo(f"wrote {json_path}")


# --------------------------------------------------------------------------- demo


def _machine_busy() -> bool:
    """True when the 1-minute load average says other work occupies at least one core's half."""
    try:
        return os.getloadavg()[0] >= 0.5
    except OSError:
        return False


def _shared_dir() -> Optional[Path]:
    candidates = [os.environ.get("STFTBLUR_SHARED"), Path.cwd().parent / "shared",
                  Path(__file__).resolve().parents[2] / "shared"]
    for c in candidates:
        if c and (Path(c) / "reference" / "author_vae" / "ours.npz").is_file():
            return Path(c)
    return None


@command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run directory.")
@click.option("--steps", type=int, default=600, show_default=True, help="Training steps (batch 50).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=_Choice(("auto", "cpu", "cuda")), default="auto", show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Directory with the MNIST IDX files.")
@click.option("--threads", type=int, default=None,
              help="CPU threads for torch (default: all cores on an idle machine, 1 when others are busy).")
@_library_errors
def demo_cmd(out: Path, steps: int, seed: int, device: str, data_dir: Optional[Path], threads: Optional[int]) -> None:
    """A short VAE training with the paper's local-phase loss on real MNIST, samples, and an
    evaluation table (against the authors' released 'ours' checkpoint when ../shared is present).

    600 steps are half an epoch; the paper trains 50 epochs (100x more steps), so expect blurry
    digits and lower scores than the released checkpoint. More steps than one epoch holds train
    as many epochs as they need.
    """
    from stftblur.training import make_train_config, train_vae

    if steps < 1:
        raise CliError(f"--steps must be >= 1, got {steps}")
    require_extra("matplotlib", "plot", "stftblur demo (its figures)")
    if threads is None and _machine_busy():
        # With every core's thread waiting for a time slice, two threads run several times slower than one.
        threads = 1
        click.echo("other processes are busy on this machine: training on 1 thread (--threads to override)")
    _setup_process(threads)
    dev = resolve_device(device)
    # The trainer stops at whichever comes first, epochs or max_steps: ask for as many epochs as
    # --steps needs (the training set is parsed once and cached, so counting it costs nothing).
    from stftblur.data import load_dataset

    n_train = load_dataset("mnist", "train", data_dir).images.shape[0]
    config = make_train_config(loss="ours", preset="paper-code", max_steps=steps, seed=seed,
                               device=dev, log_every=50, n_export=200,
                               data_dir=str(data_dir) if data_dir else None)
    config = make_train_config(config, epochs=math.ceil(steps / config.steps_per_epoch(n_train)))
    click.echo(f"training the paper's VAE with the local-phase loss ('ours', paper-code preset) for {steps} steps -> {out}")
    t0 = time.perf_counter()
    result = train_vae(config, out, progress=sys.stderr.isatty(), log=lambda m: click.echo(m, err=True))
    click.echo(f"trained in {time.perf_counter() - t0:.1f} s; samples: {out / 'samples.png'}, "
               f"reconstructions: {out / 'reconstructions.png'}")
    from stftblur.training import vae_figures
    from stftblur.viz import save_figure

    x_test = load_dataset("mnist", "test", data_dir, binarize=config.binarize).images.to(dev)
    figures = vae_figures(result.model, x_test, n_samples=1000, seed=seed,
                          title=f"demo VAE ('ours' loss, {steps} steps) on the MNIST test set")
    save_figure(figures["figure"], out / "figure.png")
    save_figure(figures["spectrum"], out / "spectrum.png")
    click.echo(f"figures: {out / 'figure.png'} (test inputs, reconstructions, prior samples), "
               f"{out / 'spectrum.png'} (spectra against the test set)")
    # train_vae evaluated the final model on the whole test set with the same seed and convention.
    rows = [("this demo run", {"metrics": result.metrics})]
    shared = _shared_dir()
    if shared is not None:
        rows.append(("authors' 'ours' checkpoint",
                     _evaluate_checkpoint(shared / "reference" / "author_vae" / "ours.npz", "mnist", data_dir,
                                         "both", 50, seed, None, 0, dev)))
    else:
        click.echo("(../shared not found: set STFTBLUR_SHARED to compare with the authors' checkpoint)")
    from stftblur.models import shipped_checkpoint

    ours = shipped_checkpoint("ours")  # this project's 50-epoch run of the same loss
    if ours is not None:
        rows.append(("stftblur 'ours' (models/)",
                     _evaluate_checkpoint(ours, "mnist", data_dir, "both", 50, seed, None, 0, dev)))
    click.echo("")
    click.echo(f"{'model':<28} {'PSNR sampled z':>15} {'SSIM sampled z':>15} {'PSNR mean z':>12} {'SSIM mean z':>12}")
    for label, r in rows:
        m = r["metrics"]
        click.echo(f"{label:<28} {m['psnr_sampled']:>15.3f} {m['ssim_sampled']:>15.4f} {m['psnr_mean']:>12.3f} {m['ssim_mean']:>12.4f}")
    click.echo(f"(MNIST test set, {result.metrics['n']:,} images; binarized input vs raw decoder output, "
               "the paper's convention)")
    deficits = figures["spectral_deficit_db"]
    click.echo(f"spectral deficit of this run against the {figures['n_test']:,} test digits (band 0.25-0.5 cycles/pixel; "
               "positive: less high-frequency power, blurrier):")
    click.echo(f"  {figures['n_samples']:,} prior samples {deficits['prior_samples']:+.2f} dB, "
               f"reconstructions {deficits['reconstructions']:+.2f} dB")


# --------------------------------------------------------------------------- models


@command("models")
@click.option("--json", "as_json", is_flag=True, help="Print every card's numbers as JSON instead of a table.")
def models_cmd(as_json: bool) -> None:
    """List the trained models shipped in models/ with their model cards' test-set numbers.

    Each name works as --checkpoint of sample and eval-vae, and as load_vae(name) in Python.
    PSNR/SSIM are the whole MNIST test set's in the paper's convention (sampled z, raw output);
    LPC-SI and the spectral deficit are those of 10,000 prior samples.
    """
    from stftblur.models import models_dir, shipped_cards

    cards = shipped_cards()
    if as_json:
        click.echo(json.dumps(cards, indent=1))
        return
    if not cards:
        click.echo("no shipped models: this installation carries none (an installed wheel has them in "
                   "stftblur/_shipped, a source checkout in models/); set STFTBLUR_MODELS to a folder of "
                   "<name>/model.safetensors")
        return
    click.echo(f"shipped models in {models_dir()}")
    click.echo(f"{'name':<14} {'loss':<10} {'PSNR / SSIM':>14} {'LPC-SI':>7} {'deficit dB':>10} {'KL nats':>8}  card")
    for name, card in cards.items():
        t = card.get("test_set", {})
        psnr_ssim = f"{t['psnr_sampled']:.2f} / {t['ssim_sampled']:.3f}" if "psnr_sampled" in t else "-"
        number = lambda key, fmt: format(t[key], fmt) if key in t else "-"  # noqa: E731
        click.echo(f"{name:<14} {card.get('loss', '-'):<10} {psnr_ssim:>14} {number('lpc_si_samples', '.3f'):>7} "
                   f"{number('spectral_deficit_samples_db', '+.2f'):>10} {number('kl_test_nats', '.1f'):>8}  "
                   f"{name}/README.md")


COMMANDS = [train_vae_cmd, sample_cmd, eval_vae_cmd, demo_cmd, models_cmd]
