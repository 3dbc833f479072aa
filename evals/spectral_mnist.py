"""Sanity measurement of the spectral deficit on real MNIST digits.

    python evals/spectral_mnist.py [--plot FILE]

The 10,000 MNIST test digits (grayscale x / 255) are the reference set. Measured against it with
stftblur.metrics.spectral_deficit (default convention: Hann window, band 0.25-0.5 cycles per
pixel): the same digits blurred by kornia's Gaussian blur (sigma 0.5, 1, 2 pixels, kernel
2 * ceil(3 sigma) + 1, reflected border), the first 10,000 training digits (another sample of the
same distribution: the deficit should be near 0 dB), and the test digits binarized at 0.5 as the
paper's VAE sees them (hard edges: more high-frequency power, a negative deficit). Writes
evals/results/spectral_mnist.json; ``--plot`` also writes the spectra figure (plot_spectra).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import kornia

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stftblur import __version__  # noqa: E402
from stftblur.data import load_dataset  # noqa: E402
from stftblur.metrics import plot_spectra, radial_power_spectrum, spectral_deficit  # noqa: E402

SIGMAS = (0.5, 1.0, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("STFTBLUR_SHARED", ROOT.parent / "shared")))
    parser.add_argument("--out", type=Path, default=ROOT / "evals" / "results" / "spectral_mnist.json")
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    data = args.shared / "data" / "mnist"
    test = load_dataset("mnist", "test", data, binarize=False, download=False).images
    train = load_dataset("mnist", "train", data, binarize=False, download=False).images[:10000]
    sets = {}
    for sigma in SIGMAS:
        k = 2 * math.ceil(3 * sigma) + 1
        sets[f"test, Gaussian blur sigma={sigma:g}"] = kornia.filters.gaussian_blur2d(
            test, (k, k), (sigma, sigma), border_type="reflect"
        )
    sets["train (first 10,000)"] = train
    sets["test binarized at 0.5"] = (test > 0.5).float()
    reference = radial_power_spectrum(test)
    rows = {}
    spectra = {}
    for name, images in sets.items():
        d = spectral_deficit(images, reference)
        spectra[name] = d.images
        rows[name] = {
            "n_images": d.images.n_images,
            "spectral_deficit_db": round(d.deficit_db, 3),
            # the power ratio to the reference at 0.25 and 0.5 cycles per pixel (bins 7/28 and 14/28)
            "ratio_at": {f"{f:.3f}": round(r, 4) for f, r in zip(d.freqs.tolist(), d.ratio.tolist()) if f in (0.25, 0.5)},
        }
        print(f"{name:40s} {d.deficit_db:8.3f} dB", file=sys.stderr)
    result = {
        "command": "python evals/spectral_mnist.py",
        "stftblur": __version__,
        "reference": "MNIST test, 10,000 digits, grayscale x / 255",
        "convention": {"window": "hann", "band_cycles_per_pixel": [0.25, 0.5], "n_bins": reference.n_bins},
        "results": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    if args.plot is not None:
        fig = plot_spectra(spectra, reference, reference_label="MNIST test")
        fig.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
