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
from typing import Any, Dict

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "evals"))

from _machine import describe  # noqa: E402
from table1 import AUTHOR, AUTHOR_FILES  # noqa: E402

from stftblur.data import load_dataset  # noqa: E402
from stftblur.metrics import lpc_si, radial_power_spectrum, spectral_deficit  # noqa: E402
from stftblur.metrics.spectral import plot_spectra  # noqa: E402
from stftblur.models import load_author_checkpoint, load_vae, shipped_models  # noqa: E402
from stftblur.training.evaluation import sample_prior  # noqa: E402
from stftblur.io import make_grid  # noqa: E402

FIGURES = ROOT / "docs" / "figures"
RESULTS = ROOT / "evals" / "results" / "vae_figure.json"


def models() -> Dict[str, torch.nn.Module]:
    out: Dict[str, torch.nn.Module] = {}
    for loss, fname in AUTHOR_FILES.items():
        if (AUTHOR / fname).exists():
            out[f"released {loss}"] = load_author_checkpoint(AUTHOR / fname)
    for name in shipped_models():
        out[f"stftblur {name}"] = load_vae(name)
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
    for label, model in models().items():
        print(f"measuring {label}", flush=True)
        model.eval()
        samples = sample_prior(model, args.n_samples, seed=0).clamp(0, 1)
        recon = model.decode(model.encode(x[:16])[0]).clamp(0, 1)
        spectra[label] = radial_power_spectrum(samples)
        rows[label] = {"lpc_si_samples": float(lpc_si(samples).mean()),
                       "spectral_deficit_db": spectral_deficit(spectra[label], ref).deficit_db}
        grids[label] = (make_grid(recon, nrow=4)[0], make_grid(samples[:16], nrow=4)[0])
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["MNIST test digits"] + list(grids)
    fig, axes = plt.subplots(2, len(cols), figsize=(2.6 * len(cols), 6.2), squeeze=False)
    for j, col in enumerate(cols):
        top, bottom = (inputs, real) if j == 0 else grids[col]
        for i, img in enumerate((top, bottom)):
            axes[i, j].imshow(img.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        r = rows[col]
        axes[0, j].set_title(col.replace("released ", "released\n").replace("stftblur ", "stftblur\n"), fontsize=10)
        axes[1, j].set_xlabel(f"LPC-SI {r['lpc_si_samples']:.3f}\ndeficit {r['spectral_deficit_db']:+.1f} dB", fontsize=10)
    axes[0, 0].set_ylabel("test inputs /\nreconstructions", fontsize=10)
    axes[1, 0].set_ylabel("test digits /\nprior samples", fontsize=10)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / "vae_models.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
