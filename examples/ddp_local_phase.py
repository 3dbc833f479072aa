"""LocalPhaseLoss with DistributedDataParallel, launched by torchrun (gloo on the CPU, nccl on GPUs).

    torchrun --nproc_per_node 2 examples/ddp_local_phase.py [--steps 20] [--device auto|cpu|cuda]
    torchrun --standalone --nproc_per_node 2 examples/ddp_local_phase.py --check --out grads.json

Every process takes its 1/world share of each global batch; DDP averages the gradients over
the processes during ``backward``. The loss has ``reduction="mean"`` over the images of a
process and the shares are equal, so the averaged gradient is the gradient of the mean loss
over the whole global batch. ``--check`` verifies that on the first batch: rank 0 also computes
the single-process gradient of the full batch and reports the largest difference (and writes
it to ``--out`` as JSON); the exit code is 1 if it exceeds ``--atol``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, NoReturn, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TinyDeblur, make_batch  # noqa: E402

from stftblur import LocalPhaseLoss  # noqa: E402


def objective(local_phase: LocalPhaseLoss, output: torch.Tensor, target: torch.Tensor, weight: float) -> torch.Tensor:
    return F.l1_loss(output, target) + weight * local_phase(output, target)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--global-batch", type=int, default=8, help="images per step over all processes")
    p.add_argument("--weight", type=float, default=0.05)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--check", action="store_true", help="compare the DDP gradient with the single-process one")
    p.add_argument("--atol", type=float, default=1e-6)
    p.add_argument("--out", type=Path, help="with --check: write the comparison as JSON (rank 0)")
    args = p.parse_args(argv)

    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if args.global_batch % world:
        raise SystemExit(f"--global-batch {args.global_batch} is not divisible by the {world} processes")

    torch.manual_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = TinyDeblur().to(device)
    ddp = DDP(model, device_ids=[local_rank] if use_cuda else None)
    local_phase = LocalPhaseLoss()
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-3)

    result: Dict[str, float] = {}
    for step in range(args.steps):
        blurry, sharp = make_batch(args.global_batch, args.size, seed=step)  # the same global batch on every rank
        mine = slice(rank * args.global_batch // world, (rank + 1) * args.global_batch // world)
        x, y = blurry[mine].to(device), sharp[mine].to(device)
        loss = objective(local_phase, ddp(x), y, args.weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # gradients are averaged over the processes here
        if step == 0 and args.check:
            result = _check(model, local_phase, blurry, sharp, args, rank, world, device)
        optimizer.step()
    total = loss.detach().clone()
    dist.all_reduce(total)
    if rank == 0:
        print(f"{world} processes ({dist.get_backend()}), last step's mean loss {total.item() / world:.4f}")
    dist.destroy_process_group()
    if result and result["max_abs_diff"] > args.atol:
        raise SystemExit(1)
    return result


def _check(model, local_phase, blurry, sharp, args, rank: int, world: int, device) -> Dict[str, float]:
    """Rank 0: the single-process gradient of the full batch, against the DDP-averaged one."""
    ddp_grads: List[torch.Tensor] = [p.grad.detach().cpu().clone() for p in model.parameters()]
    result: Dict[str, float] = {}
    if rank == 0:
        torch.manual_seed(0)
        single = TinyDeblur().to(device)
        single.load_state_dict(model.state_dict())
        loss = objective(local_phase, single(blurry.to(device)), sharp.to(device), args.weight)
        ref = torch.autograd.grad(loss, list(single.parameters()))
        diffs = [(g - r.cpu()).abs().max().item() for g, r in zip(ddp_grads, ref)]
        scale = max(r.abs().max().item() for r in ref)
        result = {"world_size": world, "backend": dist.get_backend(), "max_abs_diff": max(diffs), "max_abs_grad": scale}
        print(f"DDP-averaged vs single-process full-batch gradient: max |difference| {max(diffs):.3e} (largest gradient {scale:.3e})")
        if args.out is not None:
            args.out.write_text(json.dumps(result) + "\n")
    flag = torch.tensor([result.get("max_abs_diff", 0.0)], device=device)
    dist.broadcast(flag, 0)  # every rank learns the verdict
    return {"max_abs_diff": float(flag)} if rank else result


def _exit_without_finalizing(status: object) -> NoReturn:
    """End the process with ``status`` (as ``SystemExit`` would) but skip interpreter shutdown.

    Constructing DDP keeps the gloo process group alive after ``destroy_process_group()``
    (torch 2.14: its worker threads are still running), and a worker may free a finished
    all-reduce, whose tensors belong to Python, while the interpreter shuts down. It then waits
    for the GIL during finalisation and the process aborts ("terminate called without an active
    exception", exit -6): 16 of 200 runs of the test's command on 2 CPUs
    (``python evals/ddp_teardown.py --finalize`` measures it). All work is done and written
    when this runs, so leave at once.
    """
    if isinstance(status, str):  # SystemExit("message"): print it and fail, as Python does
        print(status, file=sys.stderr)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if status is None else int(status))


def run(argv: Optional[Sequence[str]] = None) -> NoReturn:
    """The command line: ``main`` and then ``_exit_without_finalizing`` with its exit status."""
    try:
        main(argv)
    except SystemExit as stop:  # --help, a bad option, or a failed --check
        _exit_without_finalizing(stop.code)
    _exit_without_finalizing(0)


if __name__ == "__main__":
    run()
