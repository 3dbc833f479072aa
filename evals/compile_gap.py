"""Where the compiled loss's extra time goes at a small batch (issue #22's step target).

    python evals/compile_gap.py [--shape 50x1x28x28] [--calls 1000] [--rounds 500] [--out evals/results/compile_gap.json]

At 50x1x28x28 ``torch.compile(LocalPhaseLoss())`` cost about 0.4 ms a step more than the eager
loss (``evals/bench_compile.py --repeat``) while the loss put each side through its own forward
transform. This diagnostic measures (1 and 2 in its own process, 3 in fresh subprocesses):

1. ``dispatch``: the operator ``torch.ops.stftblur.local_phase`` called under ``torch.no_grad()``
   against the Python function it wraps (``stftblur.losses._fused.fused_forward``), same
   arguments, medians of interleaved calls; and an operator with the same schema that does no
   work (``empty_operator_same_schema_us``): what the dispatcher alone costs per call.
2. ``profile``: ``cProfile`` of ``--calls`` forward calls, eager then compiled; the functions
   whose own time differs most, in microseconds per call (positive: slower compiled).
3. ``segments``: each part of a step (before the fused forward pass, the pass itself, after it,
   the backward), the calling thread's minor page faults per step and the time in Python's
   garbage collector, eager against compiled, each variant in a fresh process: both sides of a
   chunk in one transform (the library today) or a transform a side (before), each with glibc's
   heap trimming on (the default) and off (``GLIBC_TUNABLES``, set for those subprocesses only). The fused pass is the same function in
   both modes; where it took longer compiled, the time went to page faults in the FFTs' fresh
   allocations (glibc's heap, trimmed and grown again between steps).

A diagnostic, not a benchmark of record and not a test: pause other work while it runs.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import random
import resource
import statistics
import subprocess
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


#: The variants of ``segments``, each measured in its own fresh process: (both sides of a chunk
#: in one transform where the images are small?, glibc's heap trimming turned off?).
SEGMENT_VARIANTS = {
    "one transform for both sides (the library)": (True, False),
    "a transform a side (before)": (False, False),
    "one transform for both sides, glibc trimming off": (True, True),
    "a transform a side, glibc trimming off": (False, True),
}
# glibc's tunables for a heap that is never trimmed and never mmaps: no page is returned to the
# system between steps, so none has to be faulted in again (this diagnostic's subprocesses only).
NO_TRIM = "glibc.malloc.trim_threshold=4000000000:glibc.malloc.mmap_threshold=4000000000"


def segments(x: torch.Tensor, y: torch.Tensor, rounds: int, stack: bool) -> Dict[str, Any]:
    """Each part of one forward + backward step, eager against compiled (medians, microseconds):
    ``call_to_body`` (from the call to the start of the fused forward pass: the module's Python
    in eager mode; Dynamo's guards, AOTAutograd's wrappers and the operator's entry compiled),
    ``body`` (the fused forward pass, the same function in both), ``body_to_return``, ``backward``
    and ``step``; the calling thread's minor page faults per step (a mean: they come in bursts;
    ``getrusage(RUSAGE_THREAD)``); and the time in Python's garbage collector over all the timed
    steps (milliseconds).
    ``stack``: both sides of a chunk in one forward transform where the images are small (the
    library's choice, ``_fused._stack_sides``), or a transform a side (what it did before; set by
    this script in its own process)."""
    stamps: Dict[str, float] = {}
    original = _ops.fused_forward

    def timed(*args: Any) -> Any:
        stamps["b0"] = time.perf_counter()
        out = original(*args)
        stamps["b1"] = time.perf_counter()
        return out

    def faults() -> int:
        return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt

    gc_seconds = [0.0]
    gc_started = [0.0]

    def gc_timer(phase: str, info: Dict[str, Any]) -> None:  # Python's cyclic collector, timed
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_seconds[0] += time.perf_counter() - gc_started[0]

    stack_sides = _fused._stack_sides
    if not stack:
        _fused._stack_sides = lambda per_image: False
    _ops.fused_forward = timed
    gc.callbacks.append(gc_timer)  # this script's own process
    losses = {"eager": LocalPhaseLoss(), "compiled": torch.compile(LocalPhaseLoss())}
    parts: Dict[str, Dict[str, List[float]]] = {name: {} for name in losses}
    warmup = 20  # steps of each mode not timed (the first compiled call compiles)
    try:
        for r in range(warmup + rounds):
            names = list(losses)
            random.shuffle(names)
            for name in names:
                x.grad = None
                gc_seconds[0] = 0.0
                f0 = faults()
                t0 = time.perf_counter()
                loss = losses[name](x, y)
                t1 = time.perf_counter()
                loss.backward()
                t2 = time.perf_counter()
                f1 = faults()
                if r < warmup:
                    continue
                seconds = {"call_to_body": stamps["b0"] - t0, "body": stamps["b1"] - stamps["b0"],
                           "body_to_return": t1 - stamps["b1"], "backward": t2 - t1, "step": t2 - t0}
                for key, elapsed in seconds.items():
                    parts[name].setdefault(key, []).append(elapsed * 1e6)  # microseconds
                parts[name].setdefault("page_faults", []).append(float(f1 - f0))
                parts[name].setdefault("gc_ms_total", []).append(gc_seconds[0] * 1e3)
    finally:
        gc.callbacks.remove(gc_timer)
        _ops.fused_forward = original
        _fused._stack_sides = stack_sides
    # Times: medians. Page faults come in bursts (most steps have none): means per step. The
    # garbage collector's time: the total over the timed steps (a full collection, after the
    # compile's many new objects, lands in one step; the medians above leave it out).
    result: Dict[str, Any] = {}
    for key in parts["eager"]:
        how: Callable[[List[float]], float] = {"page_faults": statistics.mean, "gc_ms_total": sum}.get(
            key, statistics.median)
        e, c = how(parts["eager"][key]), how(parts["compiled"][key])
        result[key] = {"eager": round(e, 1), "compiled": round(c, 1), "compiled_minus_eager": round(c - e, 1)}
    result["compiled_over_eager"] = round(result["step"]["compiled"] / result["step"]["eager"], 3)
    return result


def _segments_in_subprocesses(shape: str, rounds: int) -> Dict[str, Any]:
    """``segments`` for every variant, each in a fresh process (the heap's history differs)."""
    out: Dict[str, Any] = {}
    for label, (stack, no_trim) in SEGMENT_VARIANTS.items():
        env = dict(os.environ)
        if no_trim:
            env["GLIBC_TUNABLES"] = NO_TRIM
        cmd = [sys.executable, __file__, "--shape", shape, "--rounds", str(rounds),
               "--segments-worker", "stack" if stack else "per-side"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
        parts = out[label]
        print(f"{label}: compiled / eager {parts['compiled_over_eager']}", flush=True)
        for key in ("call_to_body", "body", "body_to_return", "backward", "step", "page_faults", "gc_ms_total"):
            row = parts[key]
            print(f"  {key:15s} eager {row['eager']:8.1f}  compiled {row['compiled']:8.1f}  "
                  f"difference {row['compiled_minus_eager']:+7.1f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="50x1x28x28")
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=500, help="timed steps of each variant in segments")
    ap.add_argument("--out", type=Path, default=Path("evals/results/compile_gap.json"))
    ap.add_argument("--segments-worker", choices=["stack", "per-side"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    shape = [int(v) for v in args.shape.split("x")]
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(shape, generator=gen)
    x = torch.rand(shape, generator=gen).requires_grad_()
    if args.segments_worker:
        print(json.dumps(segments(x, y, args.rounds, args.segments_worker == "stack")))
        return
    threads = torch.get_num_threads()
    result: Dict[str, Any] = {"command": " ".join(["python"] + sys.argv), "shape": args.shape,
                              "torch": torch.__version__, "default_threads": threads}
    result["dispatch"] = dispatch(x.detach(), y, args.calls)
    print("dispatch (no grad):", result["dispatch"], flush=True)
    result["profile"] = profile(x, y, args.calls)
    print("own time per forward call, compiled - eager (us):", flush=True)
    for row in result["profile"]:
        print(f"  {row['compiled_minus_eager_us']:+8.1f}  {row['function']}", flush=True)
    result["segments"] = _segments_in_subprocesses(args.shape, args.rounds)
    result["load_average_1min_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
