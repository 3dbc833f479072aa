"""The VAE models side by side: reconstructions, prior samples, sharpness and spectral deficit.

    python evals/vae_figure.py [--n-samples 10000]

Models: the authors' five released checkpoints (../shared/reference/author_vae/*.npz, when
present) and every model shipped in models/. For each: 16 test reconstructions (z = posterior
mean, clamped) and 16 prior samples (z ~ N(0, I), seed 0), labelled with the mean LPC-SI of
``--n-samples`` prior samples (clamped to [0, 1]) and their spectral deficit
(``stftblur.metrics.spectral_deficit``, band 0.25-0.5 cycles/pixel, Hann window) against the
10,000 binarized MNIST test digits, the images the models are trained to reproduce (positive:
less high-frequency power than the digits, i.e. blurrier). Writes docs/figures/vae_models.png,
docs/figures/vae_spectra.png and evals/results/vae_figure.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "evals"))

from _machine import describe  # noqa: E402
from table1 import AUTHOR, AUTHOR_FILES, LOSS_ORDER, RELEASED_AS  # noqa: E402

from stftblur.data import load_dataset  # noqa: E402
from stftblur.metrics import lpc_si, radial_power_spectrum, spectral_deficit  # noqa: E402
from stftblur.metrics.spectral import plot_spectra  # noqa: E402
from stftblur.models import load_author_checkpoint, load_vae, shipped_cards  # noqa: E402
from stftblur.training.evaluation import sample_prior  # noqa: E402
from stftblur.io import make_grid  # noqa: E402

FIGURES = ROOT / "docs" / "figures"
RESULTS = ROOT / "evals" / "results" / "vae_figure.json"


def models() -> Dict[Tuple[str, str], torch.nn.Module]:
    """(source, loss) -> model: source "released" (the authors') or "stftblur" (models/)."""
    out: Dict[Tuple[str, str], torch.nn.Module] = {}
    for loss, fname in AUTHOR_FILES.items():
        if (AUTHOR / fname).exists():
            out["released", loss] = load_author_checkpoint(AUTHOR / fname)
    for name, card in shipped_cards().items():  # the card names the loss (folder dft-ssim: loss dft+ssim)
        out["stftblur", card.get("loss", name)] = load_vae(name)
    return out


@torch.no_grad()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-samples", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = load_dataset("mnist", split="test", binarize=True).images
    ref = radial_power_spectrum(x)
    rows: Dict[str, Dict[str, Any]] = {}
    grids = {}
    spectra = {}
    for (source, loss), model in models().items():
        label = f"{source} {loss}"
        print(f"measuring {label}", flush=True)
        model.eval()
        samples = sample_prior(model, args.n_samples, seed=0).clamp(0, 1)
        recon = model.decode(model.encode(x[:16])[0]).clamp(0, 1)
        spectra[label] = radial_power_spectrum(samples)
        rows[label] = {"lpc_si_samples": float(lpc_si(samples).mean()),
                       "spectral_deficit_db": spectral_deficit(spectra[label], ref).deficit_db}
        grids[source, loss] = (make_grid(recon, nrow=4)[0], make_grid(samples[:16], nrow=4)[0])
    real = radial_power_spectrum(x[:args.n_samples])
    rows["MNIST test digits"] = {"lpc_si_samples": float(lpc_si(x[:args.n_samples]).mean()),
                                 "spectral_deficit_db": spectral_deficit(real, ref).deficit_db}
    draw(grids, rows, make_grid(x[:16], nrow=4)[0], make_grid(x[16:32], nrow=4)[0])
    fig = plot_spectra(spectra, ref, reference_label="MNIST test digits (binarized)",
                       title="Prior samples of the VAEs against the MNIST test digits")
    fig.savefig(FIGURES / "vae_spectra.png", dpi=100)
    RESULTS.write_text(json.dumps({"command": "python evals/vae_figure.py " + " ".join(sys.argv[1:]),
                                   "n_samples": args.n_samples, "machine": describe("cpu"), "models": rows}, indent=1) + "\n")
    for k, v in rows.items():
        print(f"{k:28s} LPC-SI {v['lpc_si_samples']:.4f}  deficit {v['spectral_deficit_db']:+.2f} dB")
    return 0


def draw(grids, rows, inputs, real) -> None:
    """One column per loss (Table 1's order), the released model above this project's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [loss for loss in LOSS_ORDER if any((src, loss) in grids for src in ("released", "stftblur"))]
    sources = [src for src in ("released", "stftblur") if any((src, loss) in grids for loss in losses)]
    fig, axes = plt.subplots(2 * len(sources), 1 + len(losses), figsize=(2.5 * (1 + len(losses)), 3.0 * 2 * len(sources)),
                             squeeze=False)
    for i, src in enumerate(sources):
        top, bottom = axes[2 * i], axes[2 * i + 1]
        for j, loss in enumerate([None] + losses):
            cell = (inputs, real) if loss is None else grids.get((src, loss))
            for ax, img in zip((top[j], bottom[j]), cell or (None, None)):
                ax.set_xticks([])
                ax.set_yticks([])
                if img is None:
                    ax.axis("off")
                else:
                    ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if loss is None:
                r = rows["MNIST test digits"]
            elif cell is None:
                note = "not shipped" if src == "stftblur" else (f"compare with\nreleased {RELEASED_AS[loss]}" if loss in RELEASED_AS
                                                           else "no released model")
                top[j].text(0.5, 0.5, note, ha="center", va="center", fontsize=10, color="0.5", transform=top[j].transAxes)
                continue
            else:
                r = rows[f"{src} {loss}"]
            bottom[j].set_xlabel(f"LPC-SI {r['lpc_si_samples']:.3f}\ndeficit {r['spectral_deficit_db']:+.1f} dB", fontsize=10)
        top[0].set_ylabel(f"{src}:\ntest inputs /\nreconstructions", fontsize=10)
        bottom[0].set_ylabel(f"{src}:\ntest digits /\nprior samples", fontsize=10)
    axes[0, 0].set_title("MNIST test digits", fontsize=10)
    for j, loss in enumerate(losses, start=1):
        axes[0, j].set_title(_LABEL.get(loss, loss), fontsize=10)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / "vae_models.png", dpi=100)
    plt.close(fig)


# Column titles that fit 2.5 inches.
_LABEL = {"ours": "ours\n(paper-code preset)", "ffl": "l2 + focal\nfrequency loss", "lpl": "lpl: ssim +\nLocalPhaseLoss()",
          "l2-released": "l2, released\nsettings"}


if __name__ == "__main__":
    sys.exit(main())
