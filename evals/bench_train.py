"""Milliseconds per VAE training step for every loss (batch 50, real MNIST, the trainer's own step).

    python evals/bench_train.py                       # torch's default thread count
    python evals/bench_train.py --threads 1 2 --steps 200
    python evals/bench_train.py --profile ours        # also print where the time of one loss goes

Each configuration runs ``--warmup`` steps, then ``--steps`` timed steps; the median wall time
per step is reported, with the median CPU time (process time, which other processes on a shared
machine do not inflate as much) and the 1-minute load average before and after. Results go to
evals/results/bench_train.json with the machine description. This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import torch

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
    tune_allocator,
)
from stftblur.models import create_vae  # noqa: E402


def bench_loss(loss: str, x_train: torch.Tensor, steps: int, warmup: int, device: str) -> Dict[str, float]:
    config = TrainConfig(objective=ObjectiveConfig(loss), device=device)
    torch.manual_seed(0)
    model = create_vae(config.model).to(device)
    objective = VAEObjective(config.objective)
    opt, sched = make_optimizer(model, config)
    gen = torch.Generator(device=device).manual_seed(1)
    perm = torch.randperm(x_train.shape[0], generator=torch.Generator().manual_seed(0)).to(device)
    wall: List[float] = []
    cpu: List[float] = []
    faults = 0
    for i in range(warmup + steps):
        x = x_train[perm[i * 50 : (i + 1) * 50]]
        if device == "cuda":
            torch.cuda.synchronize()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), time.process_time()
        terms = train_step(model, objective, opt, sched, x, gen)
        float(terms["loss"])  # wait for the step (a no-op on CPU)
        if i >= warmup:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    return {
        "ms_per_step": 1000 * statistics.median(wall),
        "ms_per_step_p10": 1000 * sorted(wall)[len(wall) // 10],
        "cpu_ms_per_step": 1000 * statistics.median(cpu),
        "page_faults_per_step": faults / steps,
    }


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
    parser.add_argument("--out", type=Path, default=ROOT / "evals" / "results" / "bench_train.json")
    parser.add_argument("--default-allocator", action="store_true",
                        help="Do not call stftblur.training.tune_allocator() (glibc's page-faulting defaults).")
    args = parser.parse_args()
    allocator_tuned = False if args.default_allocator else tune_allocator()

    x_train = load_dataset("mnist", "train", args.data_dir).images.to(args.device)
    need = (args.warmup + args.steps) * 50
    if need > x_train.shape[0]:
        raise SystemExit(f"--warmup + --steps must be <= {x_train.shape[0] // 50}")
    results: Dict[str, Any] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows: Dict[str, Any] = {}
        for loss in args.losses:
            load_before = os.getloadavg()[0]
            r = bench_loss(loss, x_train, args.steps, args.warmup, args.device)
            r["load_average_before"] = load_before
            r["load_average_after"] = os.getloadavg()[0]
            rows[loss] = r
            print(f"threads={threads} {loss:>9}: {r['ms_per_step']:7.2f} ms/step (p10 {r['ms_per_step_p10']:.2f}, "
                  f"cpu {r['cpu_ms_per_step']:.2f}, {r['page_faults_per_step']:.0f} faults), load {load_before:.2f}->{r['load_average_after']:.2f}",
                  flush=True)
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
