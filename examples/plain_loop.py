"""LocalPhaseLoss in a plain PyTorch training loop (L1 + weight * LocalPhaseLoss).

    python examples/plain_loop.py [--steps 50] [--size 64] [--batch 8] [--device auto]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TinyDeblur, make_batch, pick_device  # noqa: E402

from stftblur import LocalPhaseLoss  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--weight", type=float, default=0.05)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = pick_device(args.device)

    torch.manual_seed(0)
    model = TinyDeblur().to(device)
    local_phase = LocalPhaseLoss()  # 16x16 periodic Hann, stride 4, wrapped phase
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    first = last = float("nan")
    for step in range(args.steps):
        blurry, sharp = (t.to(device) for t in make_batch(args.batch, args.size, seed=step))
        output = model(blurry)
        loss = F.l1_loss(output, sharp) + args.weight * local_phase(output, sharp)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        last = loss.item()
        first = last if step == 0 else first
    print(f"loss {first:.4f} -> {last:.4f} after {args.steps} steps on {device}")
    return {"first": first, "last": last}


if __name__ == "__main__":
    main()
