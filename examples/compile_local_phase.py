"""LocalPhaseLoss with torch.compile: compile the model (and, optionally, the loss).

    python examples/compile_local_phase.py [--backend inductor|aot_eager|eager] [--compile-loss] [--steps 20]

``inductor`` (the default backend) generates C++/OpenMP code on the CPU (a C++ compiler is
needed, and the first call is slow) and Triton kernels on CUDA. LocalPhaseLoss is one PyTorch
custom operator (``torch.ops.stftblur.local_phase``) with a fake implementation and an
autograd formula, so torch.compile treats it as one opaque call: no graph break
(``fullgraph=True`` works), nothing of the loss to trace or generate code for, and the same
computation as eager mode (the compiled C kernels on the CPU). ``--compile-loss`` compiles the
loss too; calling it eagerly next to the compiled model gives the same result. Compile times
and step times: docs/benchmarks.md ("torch.compile").
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
    p.add_argument("--backend", default="inductor")
    p.add_argument("--compile-loss", action="store_true")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = pick_device(args.device)

    torch.manual_seed(0)
    eager_model = TinyDeblur().to(device)
    model = torch.compile(eager_model, backend=args.backend)  # shares the parameters
    local_phase = LocalPhaseLoss()
    loss_fn = torch.compile(local_phase, backend=args.backend) if args.compile_loss else local_phase
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    # Compiled against eager on the first batch: loss values and parameter gradients.
    blurry, sharp = (t.to(device) for t in make_batch(args.batch, args.size, seed=0))
    eager_loss = F.l1_loss(eager_model(blurry), sharp) + args.weight * local_phase(eager_model(blurry), sharp)
    eager_grads = torch.autograd.grad(eager_loss, list(eager_model.parameters()))

    last = float("nan")
    for step in range(args.steps):
        blurry, sharp = (t.to(device) for t in make_batch(args.batch, args.size, seed=step))
        output = model(blurry)
        loss = F.l1_loss(output, sharp) + args.weight * loss_fn(output, sharp)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step == 0:
            loss_diff = abs(loss.item() - eager_loss.item())
            grad_diff = max((p.grad - g).abs().max().item() for p, g in zip(eager_model.parameters(), eager_grads))
            first = loss.item()
        optimizer.step()
        last = loss.item()
    print(
        f"backend {args.backend} (loss compiled: {args.compile_loss}) on {device}: first loss {first:.6f}, "
        f"|compiled - eager| {loss_diff:.2e}, max gradient difference {grad_diff:.2e}; final loss {last:.4f}"
    )
    return {"first": first, "eager": eager_loss.item(), "loss_diff": loss_diff, "grad_diff": grad_diff, "last": last}


if __name__ == "__main__":
    main()
