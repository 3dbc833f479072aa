"""LocalPhaseLoss combined with kornia's SSIMLoss, and how kornia's SSIM loss relates to stftblur's.

    python examples/kornia_ssim_local_phase.py [--steps 20] [--size 64] [--batch 8] [--device auto]

Conventions: ``kornia.losses.SSIMLoss(11)`` is (1 - SSIM) / 2 averaged over an SSIM map computed
with 'same' (reflect) padding; ``stftblur.SSIMLoss()`` is 1 - SSIM over the 'valid' map (no
padding: TensorFlow's and scikit-image's convention). Both use an 11x11 Gaussian window with
sigma 1.5, so ``kornia.losses.ssim_loss(x, y, 11, padding="valid")`` equals
``stftblur.ssim_loss(x, y) / 2`` up to rounding, while the 'same' version also scores the
reflected borders and differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import kornia
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TinyDeblur, make_batch, pick_device  # noqa: E402

from stftblur import LocalPhaseLoss, ssim_loss  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--weight", type=float, default=0.05)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = pick_device(args.device)

    torch.manual_seed(0)
    model = TinyDeblur().to(device)
    ssim = kornia.losses.SSIMLoss(window_size=11)  # (1 - SSIM) / 2, 'same' padding
    local_phase = LocalPhaseLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    last = float("nan")
    for step in range(args.steps):
        blurry, sharp = (t.to(device) for t in make_batch(args.batch, args.size, seed=step))
        output = model(blurry)
        loss = ssim(output, sharp) + args.weight * local_phase(output, sharp)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        last = loss.item()

    # The two SSIM conventions on one batch.
    blurry, sharp = (t.to(device) for t in make_batch(args.batch, args.size, seed=0))
    values = {
        "kornia_same": kornia.losses.ssim_loss(blurry, sharp, 11).item(),
        "kornia_valid": kornia.losses.ssim_loss(blurry, sharp, 11, padding="valid").item(),
        "stftblur_valid": ssim_loss(blurry, sharp).item(),
        "stftblur_same": ssim_loss(blurry, sharp, padding="same").item(),
        "last": last,
    }
    print(
        f"final loss {last:.4f}; kornia SSIMLoss 'same' {values['kornia_same']:.6f}, 'valid' {values['kornia_valid']:.6f}; "
        f"stftblur SSIMLoss 'valid' / 2 = {values['stftblur_valid'] / 2:.6f}, 'same' / 2 = {values['stftblur_same'] / 2:.6f}"
    )
    return values


if __name__ == "__main__":
    main()
