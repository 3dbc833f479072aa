"""Forward + backward time and peak memory of LocalPhaseLoss against other losses.

    python evals/bench_loss.py [--device cpu|cuda] [--rounds N] [--out evals/results/bench_loss.json]
    python evals/bench_loss.py --thread-sweep    # where one thread beats the default count
    python evals/bench_loss.py --reference-path  # also time the pure-PyTorch path (no compiler)
    python evals/bench_loss.py --study           # the loss-design study's variants against LocalPhaseLoss()

All losses are timed in one process, interleaved round by round (A, B, C, D, A, B, ...), so a
change in machine load hits all of them alike; the median of the rounds is reported, and its
ratio to kornia's SSIMLoss(11). ``--reference-path`` adds LocalPhaseLoss rows computed on the
pure-PyTorch path (what a user without a C compiler gets; see stftblur/losses/_compiled.py).
``--thread-sweep`` times LocalPhaseLoss() and its paper-code preset at the default thread count
and with the benchmark setting one thread around each call (the loss itself never changes the
thread count; a caller may), over problem sizes from 10^4 to 10^7 coefficients. Peak memory is measured for each loss in a fresh subprocess: on
the CPU the rise of the resident set's high-water mark (VmHWM, reset through
/proc/self/clear_refs) over the resident set before one forward + backward, the first in that
process; on CUDA the rise of torch.cuda.max_memory_allocated during a second one.
``--study`` times the variants of the loss-design study (docs/loss-design.md; the VAE's options
of evals/reproduce.py and the restoration benchmark's terms of evals/deblur/objectives.py), each
as a ratio to LocalPhaseLoss() in the same interleaved rounds, at the VAE's batch (50x1x28x28)
and the restoration benchmark's (16x1x48x48).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402

SHAPES = [(50, 1, 28, 28), (8, 3, 256, 256)]
TARGETS = {"50x1x28x28": 0.5, "8x3x256x256": 1.0}


def make_losses(reference_path: bool = False) -> Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    import kornia
    from focal_frequency_loss import FocalFrequencyLoss

    from stftblur import LocalPhaseLoss

    losses = {
        "kornia.SSIMLoss(11)": kornia.losses.SSIMLoss(11),
        "LocalPhaseLoss()": LocalPhaseLoss(),
        "LocalPhaseLoss(paper-code)": LocalPhaseLoss.from_preset("paper-code"),
        "FocalFrequencyLoss": FocalFrequencyLoss(),
        "L1": torch.nn.L1Loss(),
    }
    if reference_path:
        losses["LocalPhaseLoss() [pure PyTorch]"] = LocalPhaseLoss(kernels="reference")
        losses["LocalPhaseLoss(paper-code) [pure PyTorch]"] = LocalPhaseLoss.from_preset("paper-code", kernels="reference")
    return losses


STUDY_SHAPES = [(50, 1, 28, 28), (16, 1, 48, 48)]


def study_losses(size: int) -> Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """LocalPhaseLoss() and each variant of the loss-design study, by the name the study uses;
    the multi-resolution ones (windows up to 32) only for images of ``size`` 32 or more."""
    from deblur.objectives import make_term

    from stftblur import LocalPhaseLoss

    options = {
        "lambda1": dict(phase_weight=1.0), "lambda9": dict(phase_weight=9.0),
        "w8s2": dict(window_size=8, stride=2), "w28s4": dict(window_size=28, stride=4),
        "cosine": dict(phase_distance="cosine"), "product": dict(frequency_weighting="product"),
        "fwnone": dict(frequency_weighting="none"), "unnorm": dict(normalized=False),
        "eps0.01": dict(eps=1e-2),
    }
    losses: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"LocalPhaseLoss()": LocalPhaseLoss()}
    losses.update({name: LocalPhaseLoss(**kw) for name, kw in options.items()})
    losses.update({name: make_term(name) for name in ("prod", "complex") + (("mr-lpl", "mr-prod") if size >= 32 else ())})
    # A control: the default again, last in each round; how far it lands from 1.00x is the
    # benchmark's own position and noise effect.
    losses["LocalPhaseLoss() again"] = LocalPhaseLoss()
    return losses


SWEEP_SHAPES = [(8, 1, 28, 28), (50, 1, 28, 28), (16, 1, 64, 64), (8, 3, 96, 96), (8, 3, 128, 128),
                (8, 3, 192, 192), (8, 3, 256, 256)]


def thread_sweep(rounds: int, warmup: int = 2) -> Dict[str, Dict[str, float]]:
    """Median fwd+bwd ms of LocalPhaseLoss on one thread, set by this benchmark around each call
    ("guard"), and at the default thread count ("threads"), interleaved, for SWEEP_SHAPES."""
    from stftblur import LocalPhaseLoss

    threads = torch.get_num_threads()
    out: Dict[str, Dict[str, float]] = {}
    try:
        for preset in ("default", "paper-code"):
            loss = LocalPhaseLoss.from_preset(preset)
            plan_coeffs = {"default": 16 * 9, "paper-code": 8 * 8}[preset]
            for shape in SWEEP_SHAPES:
                gen = torch.Generator().manual_seed(0)
                y = torch.rand(shape, generator=gen)
                x = torch.rand(shape, generator=gen).requires_grad_()
                k = (shape[-2] - 16) // 4 + 1
                times: Dict[str, list] = {"guard": [], "threads": []}
                for r in range(warmup + rounds):
                    for name, n in (("guard", 1), ("threads", threads)):
                        torch.set_num_threads(n)
                        t0 = time.perf_counter()
                        _step(loss, x, y)
                        if r >= warmup:
                            times[name].append(time.perf_counter() - t0)
                key = f"{preset} {'x'.join(map(str, shape))}"
                row = {name: round(statistics.median(v) * 1e3, 3) for name, v in times.items()}
                row["coefficients"] = shape[0] * shape[1] * k * k * plan_coeffs
                row["one_thread_faster"] = row["guard"] < row["threads"]
                out[key] = row
                print(f"{key:28s} {row['coefficients']:>10d} coefficients: one thread {row['guard']:9.2f} ms, "
                      f"{threads} threads {row['threads']:9.2f} ms", flush=True)
    finally:
        torch.set_num_threads(threads)
    return out


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _step(loss, x: torch.Tensor, y: torch.Tensor) -> None:
    x.grad = None
    loss(x, y).backward()


def time_all(shape, device: str, rounds: int, warmup: int = 3, reference_path: bool = False,
             losses: Optional[Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = None) -> Dict[str, float]:
    losses = make_losses(reference_path) if losses is None else losses
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(shape, generator=gen).to(device)
    x = torch.rand(shape, generator=gen).to(device).requires_grad_()
    times: Dict[str, list] = {name: [] for name in losses}
    for r in range(warmup + rounds):
        for name, loss in losses.items():
            _sync(device)
            t0 = time.perf_counter()
            _step(loss, x, y)
            _sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) * 1e3 for name, v in times.items()}


def peak_memory_child(name: str, shape, device: str) -> None:
    """Run in a subprocess: print the peak memory (MiB) of one forward + backward."""
    loss = make_losses(reference_path=True)[name]
    y = torch.rand(shape).to(device)
    x = torch.rand(shape).to(device).requires_grad_()
    if device == "cuda":
        _step(loss, x, y)  # warm-up: caches, plans, lazy imports
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _step(loss, x, y)
        torch.cuda.synchronize()
        print((torch.cuda.max_memory_allocated() - base) / 2**20)
        return
    # Linux: reset the resident-set high-water mark, then read it after one step.
    def status(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"{field} not in /proc/self/status")

    x.grad = None
    base = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    _step(loss, x, y)
    print((status("VmHWM:") - base) / 2**20)


def peak_memory(name: str, shape, device: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, "--shape", "x".join(map(str, shape)), "--device", device],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--rounds", type=int, default=0, help="timed rounds (default: 50 small, 15 large)")
    ap.add_argument("--out", default=None, help="JSON file (default evals/results/bench_loss[_cuda].json)")
    ap.add_argument("--reference-path", action="store_true",
                    help="also time LocalPhaseLoss on its pure-PyTorch path (no compiled kernels)")
    ap.add_argument("--thread-sweep", action="store_true",
                    help="only time LocalPhaseLoss on one thread and at the default count over problem sizes")
    ap.add_argument("--study", action="store_true", help="time the loss-design study's variants")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        peak_memory_child(args.child, tuple(int(s) for s in args.shape.split("x")), args.device)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    if args.thread_sweep:
        out = Path(args.out or "evals/results/bench_loss_threads.json")
        results = {"machine": describe(args.device), "command": " ".join(["python"] + sys.argv),
                   "sweep": thread_sweep(args.rounds or 15)}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwrote {out}")
        return
    if args.study:
        out = Path(args.out or "evals/results/bench_loss_study.json")
        results = {"machine": describe(args.device), "command": " ".join(["python"] + sys.argv), "shapes": {}}
        for shape in STUDY_SHAPES:
            key = "x".join(map(str, shape))
            rounds = args.rounds or 40
            ms = time_all(shape, args.device, rounds, losses=study_losses(min(shape[-2:])))
            ref = ms["LocalPhaseLoss()"]
            results["shapes"][key] = {"rounds": rounds, "losses": {
                name: {"median_ms": round(t, 3), "ratio_to_default": round(t / ref, 3)} for name, t in ms.items()}}
            print(f"\n{key} ({args.device}, median of {rounds} interleaved rounds, forward + backward)")
            for name, t in ms.items():
                print(f"{name:20s} {t:9.2f} ms {t / ref:6.2f}x LocalPhaseLoss()")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"\nwrote {out}")
        return
    out = Path(args.out or f"evals/results/bench_loss{'_cuda' if args.device == 'cuda' else ''}.json")
    results = {"machine": describe(args.device), "command": " ".join(["python"] + sys.argv), "shapes": {}}
    for shape in SHAPES:
        key = "x".join(map(str, shape))
        rounds = args.rounds or (50 if shape[-1] <= 64 else 15)
        ms = time_all(shape, args.device, rounds, reference_path=args.reference_path)
        ref = ms["kornia.SSIMLoss(11)"]
        rows = {}
        for name, t in ms.items():
            rows[name] = {
                "median_ms": round(t, 3),
                "ratio_to_ssim": round(t / ref, 3),
                "peak_mib": round(peak_memory(name, shape, args.device), 1),
            }
        target = TARGETS.get(key)
        results["shapes"][key] = {
            "rounds": rounds,
            "losses": rows,
            "target_ratio_LocalPhaseLoss": target,
            "target_met": bool(target is not None and rows["LocalPhaseLoss()"]["ratio_to_ssim"] <= target),
        }
        print(f"\n{key} ({args.device}, median of {rounds} interleaved rounds, forward + backward)")
        print(f"{'loss':30s} {'ms':>10s} {'x SSIMLoss':>11s} {'peak MiB':>9s}")
        for name, row in rows.items():
            print(f"{name:30s} {row['median_ms']:10.2f} {row['ratio_to_ssim']:11.2f} {row['peak_mib']:9.1f}")
        if target is not None:
            print(f"target LocalPhaseLoss <= {target}x SSIMLoss: {'met' if results['shapes'][key]['target_met'] else 'MISSED'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
