"""How much the code carries: test-set KL, PSNR and SSIM of VAE checkpoints, side by side.

    python evals/kl_probe.py runs/probes/ssim-beta0.25 models/ssim ../shared/reference/author_vae/ssim.npz

Each argument is a run directory, a .safetensors file, a shipped model's name or an author .npz
checkpoint. For each: the posterior's mean KL from N(0, I) over the 10,000 binarized MNIST test
images in nats, summed over the latent dimensions as the training objective counts it
(``evals/table1.py``'s ``rate``), and PSNR / SSIM with a sampled z on the raw output (the paper's
convention) and with the mean z. Used to compare runs trained with other KL or reconstruction
weights against the released checkpoints (docs/loss-design.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "evals"))

from table1 import rate  # noqa: E402

from stftblur.data import load_dataset  # noqa: E402
from stftblur.models import load_author_checkpoint, load_vae  # noqa: E402
from stftblur.training.evaluation import evaluate_reconstructions  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = load_dataset("mnist", split="test", binarize=True).images
    print(f"{'checkpoint':48s} {'KL nats':>8s} {'PSNR/SSIM sampled z':>20s} {'PSNR/SSIM mean z':>18s}")
    for c in args.checkpoints:
        model = load_author_checkpoint(c) if c.endswith(".npz") else load_vae(c)
        m = evaluate_reconstructions(model, x, z=("sampled", "mean"), seed=0)
        print(f"{c:48s} {rate(model, x):8.2f} {m['psnr_sampled']:11.3f} / {m['ssim_sampled']:.4f}"
              f" {m['psnr_mean']:9.3f} / {m['ssim_mean']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
