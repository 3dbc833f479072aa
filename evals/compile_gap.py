"""Where the compiled loss's extra time goes at a small batch (issue #22's step target).

    python evals/compile_gap.py [--shape 50x1x28x28] [--calls 1000] [--out evals/results/compile_gap.json]

At 50x1x28x28 ``torch.compile(LocalPhaseLoss())`` costs about 0.4 ms a step more than the eager
loss (``evals/bench_compile.py --repeat``). This diagnostic, run in one process, measures:

1. ``dispatch``: the operator ``torch.ops.stftblur.local_phase`` called under ``torch.no_grad()``
   against the Python function it wraps (``stftblur.losses._fused.fused_forward``), same
   arguments, medians of interleaved calls; and an operator with the same schema that does no
   work (``empty_operator_same_schema_us``): what the dispatcher alone costs per call.
2. ``profile``: ``cProfile`` of ``--calls`` forward calls, eager then compiled; the functions
   whose own time differs most, in microseconds per call (positive: slower compiled).
3. ``fft_inside``: the median time of one ``torch.fft.rfft2`` of a (50, 49, 16, 16) tensor run
   inside the loss's forward (the operator's body is wrapped for this), eager against compiled,
   with torch's default thread count and with one thread set by this script.

A diagnostic, not a benchmark of record and not a test: pause other work while it runs.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from stftblur import LocalPhaseLoss
from stftblur.losses import _fused, _ops

ARGS_AFTER_IMAGES = (None, None, "hann", "linear", [16, 16], 4, "2d", True, "mean", 3.0, 1.0, "wrapped", 0.0, 1e-4,
                     True, False, "auto")


def _median_us(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


@torch.library.custom_op("stftblur_diagnostic::empty_local_phase", mutates_args=())
def _empty_operator(
    input: torch.Tensor, target: torch.Tensor, window: Optional[torch.Tensor], weighting: Optional[torch.Tensor],
    window_name: str, weighting_name: str, window_size: List[int], stride: int, transform: str, normalized: bool,
    aggregate: str, phase_weight: float, amplitude_weight: float, phase_distance: str, phase_offset: float,
    eps: float, need_input_grad: bool, need_target_grad: bool, kernels: str,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss operator's schema with no work: what the dispatcher alone costs per call."""
    return input.new_empty(1), input.new_empty(0), input.new_empty(0)


def dispatch(x: torch.Tensor, y: torch.Tensor, n: int) -> Dict[str, float]:
    op = torch.ops.stftblur.local_phase.default
    py_args = list((x, y) + ARGS_AFTER_IMAGES)
    py_args[6] = tuple(py_args[6])
    direct, via_op = [], []
    with torch.no_grad():
        for _ in range(20):
            _fused.fused_forward(*py_args)
            op(x, y, *ARGS_AFTER_IMAGES)
        for _ in range(n):
            direct.append(_median_us(lambda: _fused.fused_forward(*py_args), 1))
            via_op.append(_median_us(lambda: op(x, y, *ARGS_AFTER_IMAGES), 1))
        empty_op = torch.ops.stftblur_diagnostic.empty_local_phase.default
        for _ in range(200):
            empty_op(x, y, *ARGS_AFTER_IMAGES)
        empty = _median_us(lambda: empty_op(x, y, *ARGS_AFTER_IMAGES), 20 * n)
    d, o = statistics.median(direct), statistics.median(via_op)
    return {"function_us": round(d, 1), "operator_us": round(o, 1), "operator_over_function": round(o / d, 3),
            "empty_operator_same_schema_us": round(empty, 1)}


def profile(x: torch.Tensor, y: torch.Tensor, calls: int, rows: int = 12) -> List[Dict[str, Any]]:
    eager = LocalPhaseLoss()
    compiled = torch.compile(LocalPhaseLoss())
    for _ in range(30):
        eager(x, y).backward()
        compiled(x, y).backward()
    own: Dict[str, Dict[str, float]] = {}
    for name, fn in (("eager", eager), ("compiled", compiled)):
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(calls):
            fn(x, y)
        prof.disable()
        stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
        for (path, line, func), (_cc, _nc, tottime, _ct, _callers) in stats.items():
            key = f"{Path(path).name}:{line}({func})" if path != "~" else func
            own.setdefault(key, {"eager": 0.0, "compiled": 0.0})[name] += tottime / calls * 1e6
    diffs = sorted(own.items(), key=lambda kv: abs(kv[1]["compiled"] - kv[1]["eager"]), reverse=True)[:rows]
    return [{"function": k, "eager_us": round(v["eager"], 1), "compiled_us": round(v["compiled"], 1),
             "compiled_minus_eager_us": round(v["compiled"] - v["eager"], 1)} for k, v in diffs]


def fft_inside(x: torch.Tensor, y: torch.Tensor, rounds: int) -> Dict[str, float]:
    z = torch.rand(50, 49, 16, 16)
    seen: List[float] = []
    original = _ops.fused_forward

    def timed(*args: Any) -> Any:
        seen.append(_median_us(lambda: torch.fft.rfft2(z), 10))
        return original(*args)

    eager = LocalPhaseLoss()
    compiled = torch.compile(LocalPhaseLoss())
    _ops.fused_forward = timed
    try:
        for _ in range(10):
            eager(x, y).backward()
            compiled(x, y).backward()
        out: Dict[str, List[float]] = {"eager": [], "compiled": []}
        for r in range(rounds):
            order = (("eager", eager), ("compiled", compiled)) if r % 2 else (("compiled", compiled), ("eager", eager))
            for name, fn in order:
                fn(x, y).backward()
                out[name].append(seen[-1])
    finally:
        _ops.fused_forward = original
    e, c = statistics.median(out["eager"]), statistics.median(out["compiled"])
    return {"eager_us": round(e, 1), "compiled_us": round(c, 1), "compiled_over_eager": round(c / e, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="50x1x28x28")
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("evals/results/compile_gap.json"))
    args = ap.parse_args()
    shape = [int(v) for v in args.shape.split("x")]
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(shape, generator=gen)
    x = torch.rand(shape, generator=gen).requires_grad_()
    threads = torch.get_num_threads()
    result: Dict[str, Any] = {"command": " ".join(["python"] + sys.argv), "shape": args.shape,
                              "torch": torch.__version__, "default_threads": threads}
    result["dispatch"] = dispatch(x.detach(), y, args.calls)
    print("dispatch (no grad):", result["dispatch"], flush=True)
    result["profile"] = profile(x, y, args.calls)
    print("own time per forward call, compiled - eager (us):", flush=True)
    for row in result["profile"]:
        print(f"  {row['compiled_minus_eager_us']:+8.1f}  {row['function']}", flush=True)
    result["fft_inside"] = {}
    for n in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(n)  # this script's own process; the library never does this
        result["fft_inside"][str(n)] = fft_inside(x, y, 200)
        print(f"rfft2 inside the loss, {n} thread(s):", result["fft_inside"][str(n)], flush=True)
    torch.set_num_threads(threads)
    result["load_average_1min_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
