"""LocalPhaseLoss under mixed precision: torch.autocast with bfloat16 on the CPU, float16 (+ GradScaler) on CUDA.

    python examples/autocast_local_phase.py [--device auto|cpu|cuda] [--steps 20] [--size 64] [--batch 8]

The model runs in reduced precision inside the autocast region; LocalPhaseLoss casts its
inputs to float32 and computes (and differentiates) in float32 whatever the autocast state,
so no special handling is needed. float16 needs a GradScaler (small gradients underflow);
bfloat16 has float32's exponent range and does not.
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
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--weight", type=float, default=0.05)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    # bfloat16 on the CPU; float16 on CUDA (bfloat16 works there too on Ampere and newer).
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16

    torch.manual_seed(0)
    model = TinyDeblur().to(device)
    local_phase = LocalPhaseLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    # The first batch in float32 (no autocast), to compare.
    blurry, sharp = (t.to(device) for t in make_batch(args.batch, args.size, seed=0))
    with torch.no_grad():
        out32 = model(blurry)
        lp32 = local_phase(out32, sharp).item()

    last = float("nan")
    for step in range(args.steps):
        blurry, sharp = (t.to(device) for t in make_batch(args.batch, args.size, seed=step))
        with torch.autocast(device_type=device.type, dtype=amp_dtype):
            output = model(blurry)  # reduced precision (convolutions run in amp_dtype)
            lp = local_phase(output, sharp)  # computed in float32 inside
            loss = F.l1_loss(output.float(), sharp) + args.weight * lp
        if step == 0:
            lp_amp, out_dtype = lp.item(), output.dtype
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        last = loss.item()
    print(
        f"{device} autocast {amp_dtype}: model output {out_dtype}, loss {loss.dtype}; LocalPhaseLoss on the first "
        f"batch {lp_amp:.5f} (float32 without autocast: {lp32:.5f}); final loss {last:.4f}"
    )
    return {"local_phase_amp": lp_amp, "local_phase_fp32": lp32, "last": last, "output_dtype": str(out_dtype)}


if __name__ == "__main__":
    main()
