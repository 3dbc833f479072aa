"""Milliseconds per VAE training step for every loss (batch 50, real MNIST, the trainer's own step).

    python evals/bench_train.py                       # torch's default thread count
    python evals/bench_train.py --threads 1 2 --steps 200
    python evals/bench_train.py --profile ours        # also print where the time of one loss goes

Each loss runs ``--warmup`` steps, then ``--steps`` timed steps, the losses taking turns in
blocks of 10 steps (so that a change of load on a shared machine affects all of them alike); the
median wall time per step is reported, with the median CPU time (process time), the page faults
per step and the 1-minute load average before and after. Results go to
evals/results/bench_train.json with the machine description and the compiled kernels' status.
This is a benchmark, not a test.

The thread count is set here, by the benchmark (``--threads``), as the CLI's ``--threads`` does;
the loss itself never changes it (its kernels choose how many of their own threads to use from
the size of each call).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any, Dict, List

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "evals"))

from _machine import describe  # noqa: E402

from stftblur.data import load_dataset  # noqa: E402
from stftblur.training import (  # noqa: E402
    LOSSES,
    ObjectiveConfig,
    TrainConfig,
    VAEObjective,
    make_optimizer,
    train_step,
)
from stftblur.losses import _compiled  # noqa: E402
from stftblur.models import create_vae  # noqa: E402
from stftblur_cli._process import tune_allocator  # noqa: E402


def _crop_forward(layer: torch.nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """The straightforward TF-'same' transposed convolution: full output, then crop."""
    if layer.stride[0] == 1:
        return F.conv_transpose2d(x, layer.weight, layer.bias, padding=1)
    y = F.conv_transpose2d(x, layer.weight, layer.bias, stride=2)
    return y[..., : 2 * x.shape[-2], : 2 * x.shape[-1]]


class StepRunner:
    """One loss's model, objective and optimizer, stepping through real MNIST batches.

    ``straightforward=True`` is the comparison point: the same model with PyTorch's transposed
    convolutions followed by the crop, in NCHW, and the default (foreach) Adam.
    """

    def __init__(self, loss: str, x_train: torch.Tensor, device: str, straightforward: bool = False) -> None:
        config = TrainConfig(objective=ObjectiveConfig(loss), device=device)
        torch.manual_seed(0)
        self.model = create_vae(config.model).to(device)
        self.objective = VAEObjective(config.objective)
        self.opt, self.sched = make_optimizer(self.model, config)
        if straightforward:
            for layer in self.model.decoder[1:]:
                layer.forward = types.MethodType(_crop_forward, layer)
            encode = self.model.encode
            self.model.encode = lambda x: encode(x.contiguous())  # type: ignore[method-assign]
            self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr_min, eps=config.adam_eps)
            self.sched = torch.optim.lr_scheduler.CyclicLR(
                self.opt, base_lr=config.lr_min, max_lr=config.lr_max, step_size_up=config.lr_step_size,
                mode=config.lr_mode, cycle_momentum=False)
        self.gen = torch.Generator(device=device).manual_seed(1)
        self.perm = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(0)).to(device)
        self.x_train = x_train
        self.device = device
        self.i = 0
        self.wall: List[float] = []
        self.cpu: List[float] = []
        self.faults = 0

    def run(self, steps: int, record: bool = True) -> None:
        for _ in range(steps):
            x = self.x_train[self.perm[self.i * 50 : (self.i + 1) * 50]]
            self.i = (self.i + 1) % (self.x_train.shape[0] // 50)
            if self.device == "cuda":
                torch.cuda.synchronize()
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0, c0 = time.perf_counter(), time.process_time()
            terms = train_step(self.model, self.objective, self.opt, self.sched, x, self.gen)
            float(terms["loss"])  # wait for the step (a no-op on CPU)
            if record:
                self.wall.append(time.perf_counter() - t0)
                self.cpu.append(time.process_time() - c0)
                self.faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

    def summary(self) -> Dict[str, float]:
        return {
            "ms_per_step": 1000 * statistics.median(self.wall),
            "ms_per_step_p10": 1000 * sorted(self.wall)[len(self.wall) // 10],
            "cpu_ms_per_step": 1000 * statistics.median(self.cpu),
            "page_faults_per_step": self.faults / len(self.wall),
            "steps": len(self.wall),
        }


def bench_losses(losses: List[str], x_train: torch.Tensor, steps: int, warmup: int, device: str,
                 straightforward: List[str] = (), block: int = 10) -> Dict[str, Dict[str, float]]:
    """Interleaved: every loss runs ``block`` steps in turn until each has ``steps`` timed steps,
    so that a change of load on a shared machine affects all losses alike."""
    runners = {loss: StepRunner(loss, x_train, device) for loss in losses}
    for loss in straightforward:
        runners[f"{loss} (straightforward model)"] = StepRunner(loss, x_train, device, straightforward=True)
    for r in runners.values():
        r.run(warmup, record=False)
    done = 0
    while done < steps:
        k = min(block, steps - done)
        for r in runners.values():
            r.run(k)
        done += k
    return {loss: r.summary() for loss, r in runners.items()}


def profile(loss: str, x_train: torch.Tensor, steps: int = 30) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    config = TrainConfig(objective=ObjectiveConfig(loss))
    torch.manual_seed(0)
    model = create_vae(config.model)
    objective = VAEObjective(config.objective)
    opt, sched = make_optimizer(model, config)
    gen = torch.Generator().manual_seed(1)
    for i in range(10):
        train_step(model, objective, opt, sched, x_train[i * 50 : (i + 1) * 50], gen)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(10, 10 + steps):
            with torch.profiler.record_function("model forward"):
                out = model(x_train[i * 50 : (i + 1) * 50], generator=gen)
            x = x_train[i * 50 : (i + 1) * 50]
            with torch.profiler.record_function("objective forward"):
                loss, _ = objective(out.recon, x, out.mean, out.logvar)
            with torch.profiler.record_function("backward"):
                opt.zero_grad(set_to_none=True)
                loss.backward()
            with torch.profiler.record_function("optimizer"):
                opt.step()
                sched.step()
    return prof.key_averages().table(sort_by="cpu_time_total", row_limit=30, max_name_column_width=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--threads", nargs="+", type=int, default=[torch.get_num_threads()])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--profile", choices=LOSSES, default=None)
    parser.add_argument("--compare-straightforward", nargs="*", choices=LOSSES, default=[],
                        help="Also time these losses with the straightforward model (conv_transpose2d + crop, "
                             "NCHW, foreach Adam), interleaved with the others.")
    parser.add_argument("--out", type=Path, default=ROOT / "evals" / "results" / "bench_train.json")
    parser.add_argument("--default-allocator", action="store_true",
                        help="Do not call stftblur_cli._process.tune_allocator() (glibc's page-faulting defaults).")
    args = parser.parse_args()
    allocator_tuned = False if args.default_allocator else tune_allocator()

    x_train = load_dataset("mnist", "train", args.data_dir).images.to(args.device)
    need = (args.warmup + args.steps) * 50
    if need > x_train.shape[0]:
        raise SystemExit(f"--warmup + --steps must be <= {x_train.shape[0] // 50}")
    results: Dict[str, Any] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        load_before = os.getloadavg()[0]
        rows: Dict[str, Any] = bench_losses(args.losses, x_train, args.steps, args.warmup, args.device,
                                            args.compare_straightforward)
        load_after = os.getloadavg()[0]
        for loss, r in rows.items():
            print(f"threads={threads} {loss:>9}: {r['ms_per_step']:7.2f} ms/step (p10 {r['ms_per_step_p10']:.2f}, "
                  f"cpu {r['cpu_ms_per_step']:.2f}, {r['page_faults_per_step']:.0f} faults)", flush=True)
        print(f"threads={threads}: load average {load_before:.2f} -> {load_after:.2f}")
        rows["load_average_before"] = load_before
        rows["load_average_after"] = load_after
        if "ours" in rows and "l2" in rows:
            rows["ours_over_l2"] = rows["ours"]["ms_per_step"] / rows["l2"]["ms_per_step"]
            print(f"threads={threads} ours / l2 = {rows['ours_over_l2']:.2f}")
        results[f"threads={threads}"] = rows
    payload = {
        "what": "median wall-clock ms per VAE training step (forward with sampled z, loss, backward, Adam, "
                "CyclicLR), batch 50, real MNIST, default coefficients of each loss",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "steps": args.steps,
        "allocator_tuned": allocator_tuned,
        "warmup": args.warmup,
        "machine": describe(args.device),
        "compiled_kernels": _compiled.status(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    if args.profile:
        torch.set_num_threads(args.threads[0])
        print(profile(args.profile, x_train))


if __name__ == "__main__":
    main()
