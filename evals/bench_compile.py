"""torch.compile of LocalPhaseLoss: compile time against kornia's SSIMLoss, compiled against eager.

    python evals/bench_compile.py [--rounds N] [--device cpu|cuda] [--out evals/results/bench_compile.json]
    python evals/bench_compile.py --shapes 50x1x28x28 --repeat 10 --out evals/results/bench_compile_repeat.json

For each shape (50x1x28x28, 8x3x128x128, 8x3x256x256) a fresh worker process (its own empty
inductor cache, ``TORCHINDUCTOR_CACHE_DIR`` set to a new temporary folder) measures, for the
forward + backward of one step with the input requiring a gradient:

- the compile time of ``torch.compile(LocalPhaseLoss())`` and of
  ``torch.compile(kornia.losses.SSIMLoss(11))`` in that process: the wall time of the first
  compiled call (Dynamo, AOTAutograd and inductor's code generation for the forward and the
  backward graphs, plus one run) minus the median compiled step. ``torch._dynamo.reset()``
  before each; before both, one throw-away compile of a trivial function, so that neither pays
  inductor's one-time start (imports, compiler probe) for the other. Kornia is compiled first;
  its generated kernels are not reused by the loss's (different graphs).
- the step time, median of interleaved rounds (eager, compiled, ... in turn, so that a change
  of machine load hits both alike; in a new random order every round, so that no variant
  always runs after the same one), of the loss eager and compiled, and then, in rounds of their
  own, of SSIMLoss eager and compiled for scale; "eager via the operator" is LocalPhaseLoss() in eager mode with its
  autograd.Function replaced by a call of ``torch.ops.stftblur.local_phase`` (in this worker
  only), which measures what eager mode saves per call by entering the same forward and
  backward through the Function (see stftblur/losses/_ops.py; evals/compile_gap.py shows the
  dispatcher alone is a small part of it); and, in rounds
  of their own, ``torch.nn.L1Loss()`` eager and compiled: the difference is torch.compile's own
  cost per call of a compiled forward + backward (guards, wrappers), the floor under any
  compiled loss at that shape ("compile_floor_ms").

The ratios move between processes more than within one (at 50x1x28x28 the compiled step is the
eager step plus 0.2-0.5 ms); ``--repeat N`` runs N fresh processes per shape and records the
spread of the ratios ("repeats" in the JSON).

Targets (issue #22): compile time at most 3x SSIMLoss's; compiled step at most 1.15x eager.
A benchmark, not a test: pause other work on the machine while it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

SHAPES = [(50, 1, 28, 28), (8, 3, 128, 128), (8, 3, 256, 256)]
COMPILE_RATIO_TARGET = 3.0
STEP_RATIO_TARGET = 1.15


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _step(loss: Callable, x, y) -> None:
    x.grad = None
    loss(x, y).backward()


def worker(shape: List[int], rounds: int, device: str) -> Dict[str, Any]:
    """Run in a fresh process (the caller sets TORCHINDUCTOR_CACHE_DIR to an empty folder)."""
    import kornia
    import torch

    from stftblur import LocalPhaseLoss
    from stftblur.losses import _compiled, _ops

    gen = torch.Generator().manual_seed(0)
    y = torch.rand(shape, generator=gen).to(device)
    x = torch.rand(shape, generator=gen).to(device).requires_grad_()

    # Inductor's one-time start, paid by neither of the measured compiles.
    warm = torch.compile(lambda a: (a * 2.0).sin().sum())
    warm(torch.rand(4, device=device, requires_grad=True)).backward()

    losses = {"SSIMLoss(11)": kornia.losses.SSIMLoss(11), "LocalPhaseLoss()": LocalPhaseLoss()}
    first_call: Dict[str, float] = {}
    compiled: Dict[str, Callable] = {}
    for name, loss in losses.items():
        torch._dynamo.reset()
        _step(loss, x, y)  # eager warm-up: the loss's own first-use costs (kernels, caches) are not compile time
        fn = torch.compile(loss)
        _sync(device)
        t0 = time.perf_counter()
        _step(fn, x, y)
        _sync(device)
        first_call[name] = time.perf_counter() - t0
        compiled[name] = fn

    l1 = torch.nn.L1Loss()
    function = _ops._LocalPhaseFunction

    class _ViaOperator:
        @staticmethod
        def apply(*args: Any) -> torch.Tensor:
            return _ops.local_phase_op(*args)[0]

    def via_operator(a, b):  # LocalPhaseLoss() in eager mode, entering the operator itself
        _ops._LocalPhaseFunction = _ViaOperator
        try:
            return losses["LocalPhaseLoss()"](a, b)
        finally:
            _ops._LocalPhaseFunction = function

    groups = [
        {
            "LocalPhaseLoss() eager": losses["LocalPhaseLoss()"],
            "LocalPhaseLoss() compiled": compiled["LocalPhaseLoss()"],
            "LocalPhaseLoss() eager via the operator": via_operator,
        },
        {"SSIMLoss(11) eager": losses["SSIMLoss(11)"], "SSIMLoss(11) compiled": compiled["SSIMLoss(11)"]},
        # torch.compile's own cost per call of a compiled forward + backward, on a loss with next to no work
        {"L1Loss eager": l1, "L1Loss compiled": torch.compile(l1)},
    ]
    with torch.no_grad():  # the compiled loss gives the eager value
        same = torch.equal(compiled["LocalPhaseLoss()"](x, y), losses["LocalPhaseLoss()"](x, y))
    times: Dict[str, List[float]] = {k: [] for g in groups for k in g}
    order = random.Random(0)
    warmup = 2
    for variants in groups:
        names = list(variants)
        for r in range(warmup + rounds):
            order.shuffle(names)  # a new order every round: no variant always runs after the same one
            for name in names:
                _sync(device)
                t0 = time.perf_counter()
                _step(variants[name], x, y)
                _sync(device)
                if r >= warmup:
                    times[name].append(time.perf_counter() - t0)
    step = {k: statistics.median(v) for k, v in times.items()}
    compile_s = {
        "LocalPhaseLoss()": first_call["LocalPhaseLoss()"] - step["LocalPhaseLoss() compiled"],
        "SSIMLoss(11)": first_call["SSIMLoss(11)"] - step["SSIMLoss(11) compiled"],
    }
    compile_ratio = compile_s["LocalPhaseLoss()"] / compile_s["SSIMLoss(11)"]
    step_ratio = step["LocalPhaseLoss() compiled"] / step["LocalPhaseLoss() eager"]
    # The same ratio in each quarter of the rounds: how much it moves within one run.
    quarter = max(1, rounds // 4)
    blocks = [
        statistics.median(times["LocalPhaseLoss() compiled"][i : i + quarter])
        / statistics.median(times["LocalPhaseLoss() eager"][i : i + quarter])
        for i in range(0, quarter * 4, quarter)
    ]
    return {
        "rounds": rounds,
        "compiled_kernels": _compiled.available(),
        "first_call_s": {k: round(v, 3) for k, v in first_call.items()},
        "compile_s": {k: round(v, 3) for k, v in compile_s.items()},
        "compile_ratio_to_ssim": round(compile_ratio, 3),
        "compile_target_met": compile_ratio <= COMPILE_RATIO_TARGET,
        "step_median_ms": {k: round(v * 1e3, 3) for k, v in step.items()},
        "compiled_over_eager": round(step_ratio, 3),
        "compiled_over_eager_by_quarter": [round(b, 3) for b in blocks],
        "step_target_met": step_ratio <= STEP_RATIO_TARGET,
        "operator_over_function_eager": round(step["LocalPhaseLoss() eager via the operator"]
                                              / step["LocalPhaseLoss() eager"], 3),
        "ssim_compiled_over_eager": round(step["SSIMLoss(11) compiled"] / step["SSIMLoss(11) eager"], 3),
        "compile_floor_ms": round((step["L1Loss compiled"] - step["L1Loss eager"]) * 1e3, 3),
        "compiled_value_equals_eager": bool(same),
    }


def _run_worker(key: str, rounds: int, device: str) -> Dict[str, Any]:
    """One shape measured in a fresh process with its own empty inductor cache."""
    with tempfile.TemporaryDirectory(prefix="inductor-cache-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        proc = subprocess.run([sys.executable, __file__, "--worker", key, "--rounds", str(rounds),
                               "--device", device], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"worker for {key} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=0, help="timed rounds (default: 200 at 28x28, 20 larger)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", default=None, help="JSON file (default evals/results/bench_compile[_cuda].json)")
    ap.add_argument("--shapes", nargs="+", default=None, metavar="BxCxHxW",
                    help="shapes to measure (default: 50x1x28x28 8x3x128x128 8x3x256x256)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="fresh worker processes per shape; with more than one, the JSON also gets the spread "
                         "of the ratios over the processes ('repeats')")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        shape = [int(s) for s in args.worker.split("x")]
        print(json.dumps(worker(shape, args.rounds, args.device)))
        return

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _machine import describe

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    out = Path(args.out or f"evals/results/bench_compile{'_cuda' if args.device == 'cuda' else ''}.json")
    results: Dict[str, Any] = {"machine": describe(args.device), "command": " ".join(["python"] + sys.argv),
                               "targets": {"compile_ratio_to_ssim": COMPILE_RATIO_TARGET,
                                           "compiled_over_eager": STEP_RATIO_TARGET},
                               "shapes": {}}
    if args.repeat < 1:
        sys.exit("--repeat must be at least 1")
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes] if args.shapes else SHAPES
    for shape in shapes:
        key = "x".join(map(str, shape))
        rounds = args.rounds or (200 if shape[-1] <= 64 else 20)
        runs = [_run_worker(key, rounds, args.device) for _ in range(args.repeat)]
        r = runs[0]
        results["shapes"][key] = r
        if args.repeat > 1:
            ratios = [run["compiled_over_eager"] for run in runs]
            results.setdefault("repeats", {})[key] = {
                "processes": args.repeat,
                "compiled_over_eager": ratios,
                "compile_ratio_to_ssim": [run["compile_ratio_to_ssim"] for run in runs],
                "compiled_over_eager_median": statistics.median(ratios),
                "step_target_met_in": sum(run["step_target_met"] for run in runs),
                "compile_target_met_in": sum(run["compile_target_met"] for run in runs),
            }
            print(f"{key}: compiled / eager over {args.repeat} processes: {', '.join(f'{v:.3f}' for v in ratios)} "
                  f"(median {statistics.median(ratios):.3f}; target met in "
                  f"{results['repeats'][key]['step_target_met_in']})", flush=True)
        ms = r["step_median_ms"]
        print(f"{key}: compile {r['compile_s']['LocalPhaseLoss()']:.1f} s vs SSIMLoss {r['compile_s']['SSIMLoss(11)']:.1f} s "
              f"({r['compile_ratio_to_ssim']:.2f}x, target <= {COMPILE_RATIO_TARGET}); step eager "
              f"{ms['LocalPhaseLoss() eager']:.2f} ms, compiled {ms['LocalPhaseLoss() compiled']:.2f} ms "
              f"({r['compiled_over_eager']:.3f}x, target <= {STEP_RATIO_TARGET}; by quarter "
              f"{', '.join(f'{b:.2f}' for b in r['compiled_over_eager_by_quarter'])}); via the operator "
              f"{ms['LocalPhaseLoss() eager via the operator']:.2f} ms; SSIMLoss eager "
              f"{ms['SSIMLoss(11) eager']:.2f} ms, compiled {ms['SSIMLoss(11) compiled']:.2f} ms; "
              f"torch.compile's floor (L1Loss compiled - eager) {r['compile_floor_ms']:.3f} ms", flush=True)
    results["machine_after"] = {"load_average_1min": os.getloadavg()[0]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
