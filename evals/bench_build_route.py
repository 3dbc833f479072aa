"""How the compiled kernels are built: today's ctypes build of plain C against torch.utils.cpp_extension.

    python evals/bench_build_route.py                # -> evals/results/bench_build_route.json
    python evals/bench_build_route.py --rounds 20 --builds 2

Routes:

- ``ctypes`` (shipped): stftblur/csrc/*.c built by the system's C compiler into a plain shared
  library, no PyTorch headers (stftblur/_native.py), loaded with ctypes, large calls split over
  Python threads;
- ``cpp_extension``: the same C code of the local-phase kernels (evals/bench_build_route.cpp
  includes stftblur/csrc/local_phase.c, with the same floating-point flags) built by
  ``torch.utils.cpp_extension.load`` against PyTorch's headers, entered through the tensor API
  (pybind11) and split with ``at::parallel_for`` over PyTorch's OpenMP threads.

Measured:

1. first use: a fresh process with an empty cache (``STFTBLUR_CACHE`` / ``TORCH_EXTENSIONS_DIR``)
   builds and loads the kernels (torch's import not counted); ``--builds`` times each;
2. warm start: the same with the cache filled;
3. without a compiler (``PATH`` with no compiler, ``CC`` and ``CXX`` unset): what each route
   does and how long it takes to find out;
4. speed: LocalPhaseLoss forward + backward per route (ctypes kernels, cpp_extension kernels,
   the pure-PyTorch path that a user without a compiler gets on either route), medians of
   interleaved rounds, at the default thread count and at one; and the cost of one call of a
   kernel entry on an empty problem (call overhead, Python checks included).

Pause other work on the machine first. Results go to evals/results/bench_build_route.json with
the machine description. This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "evals"))
sys.path.insert(0, str(ROOT))

from _machine import describe  # noqa: E402

from stftblur import LocalPhaseLoss, _native  # noqa: E402
from stftblur.losses import _compiled  # noqa: E402

CPP = ROOT / "evals" / "bench_build_route.cpp"
EXT_NAME = "stftblur_bench_route"
FP_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-fopenmp-simd", "-fopenmp"]

_CTYPES_FIRST_USE = """
import json, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from stftblur.losses import _compiled
from stftblur.metrics import _lpc_native
t2 = time.perf_counter()
ok_lpl = _compiled.available()
t3 = time.perf_counter()
ok_lpc = _lpc_native.LIBRARY.available()
t4 = time.perf_counter()
print(json.dumps({"import_torch_s": t1 - t0, "local_phase_s": t3 - t2, "lpc_si_s": t4 - t3,
                  "available": ok_lpl and ok_lpc, "status": [_compiled.status(), _lpc_native.LIBRARY.status()]}))
"""

_CPP_FIRST_USE = """
import json, sys, time
t0 = time.perf_counter()
import torch
from torch.utils.cpp_extension import load
t1 = time.perf_counter()
try:
    load(name=%(name)r, sources=[%(cpp)r], extra_include_paths=[%(csrc)r], extra_cflags=%(flags)r,
         extra_ldflags=["-fopenmp"], verbose=False)
    ok, status = True, "built"
except Exception as exc:
    ok, status = False, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
t2 = time.perf_counter()
print(json.dumps({"import_torch_s": t1 - t0, "local_phase_s": t2 - t1, "available": ok, "status": status}))
"""


def _arch_flags() -> List[str]:
    return _native._arch_flags()


def _subprocess(code: str, env: Dict[str, str]) -> Dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


def _env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("STFTBLUR_COMPILED", None)
    env.update(extra)
    return env


def _no_compiler_env(tmp: Path, **extra: str) -> Dict[str, str]:
    """PATH with python and ninja only (no cc, c++, gcc, clang), CC and CXX unset."""
    bin_dir = tmp / "bin_without_compiler"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("ninja",):
        found = Path(sys.executable).parent / tool
        if found.exists() and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    env = _env(**extra)
    env["PATH"] = str(bin_dir)
    env.pop("CC", None)
    env.pop("CXX", None)
    return env


def measure_builds(builds: int, ext_keep: Path) -> Dict[str, Any]:
    """Cold and warm builds of both routes; the first cpp_extension build is left in ``ext_keep``."""
    cpp_code = _CPP_FIRST_USE % {"name": EXT_NAME, "cpp": str(CPP), "csrc": str(_native.CSRC),
                                 "flags": FP_FLAGS + _arch_flags()}
    out: Dict[str, Any] = {"ctypes": {"first_use": [], "warm": [], "no_compiler": None},
                           "cpp_extension": {"first_use": [], "warm": [], "no_compiler": None}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for k in range(builds):
            cache = tmp / f"ctypes_{k}"
            out["ctypes"]["first_use"].append(_subprocess(_CTYPES_FIRST_USE, _env(STFTBLUR_CACHE=str(cache))))
            out["ctypes"]["warm"].append(_subprocess(_CTYPES_FIRST_USE, _env(STFTBLUR_CACHE=str(cache))))
            ext_dir = ext_keep if k == 0 else tmp / f"ext_{k}"
            out["cpp_extension"]["first_use"].append(_subprocess(cpp_code, _env(TORCH_EXTENSIONS_DIR=str(ext_dir))))
            out["cpp_extension"]["warm"].append(_subprocess(cpp_code, _env(TORCH_EXTENSIONS_DIR=str(ext_dir))))
            print(f"build {k}: ctypes {out['ctypes']['first_use'][-1]['local_phase_s']:.2f} + "
                  f"{out['ctypes']['first_use'][-1]['lpc_si_s']:.2f} s, cpp_extension "
                  f"{out['cpp_extension']['first_use'][-1]['local_phase_s']:.2f} s", flush=True)
        out["ctypes"]["no_compiler"] = _subprocess(
            _CTYPES_FIRST_USE, _no_compiler_env(tmp, STFTBLUR_CACHE=str(tmp / "ctypes_none")))
        out["cpp_extension"]["no_compiler"] = _subprocess(
            cpp_code, _no_compiler_env(tmp, TORCH_EXTENSIONS_DIR=str(tmp / "ext_none")))
    return out


class _CppRoute:
    """Swap the two checked kernel calls of stftblur.losses._compiled for the extension's."""

    def __init__(self, ext: Any) -> None:
        self.ext = ext
        self.saved = (_compiled._terms_kernel, _compiled._overlap_add_kernel)

    def terms(self, lib, mode, fo, ft, need_o, need_t, weights, layout, params, sums):  # type: ignore[no-untyped-def]
        self.ext.terms(mode, torch.view_as_real(fo), torch.view_as_real(ft), need_o, need_t, *weights, *layout,
                       *params, sums)

    def overlap_add(self, lib, patches, win, out, stride):  # type: ignore[no-untyped-def]
        self.ext.overlap_add(patches, win, out, stride)

    def __enter__(self) -> None:
        _compiled._terms_kernel, _compiled._overlap_add_kernel = self.terms, self.overlap_add

    def __exit__(self, *exc: Any) -> None:
        _compiled._terms_kernel, _compiled._overlap_add_kernel = self.saved


class _Reference:
    def __enter__(self) -> None:
        self.saved = _compiled.LIBRARY.enabled
        _compiled.LIBRARY.enabled = False

    def __exit__(self, *exc: Any) -> None:
        _compiled.LIBRARY.enabled = self.saved


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


SHAPES = [("paper-code", (50, 1, 28, 28)), ("default", (50, 1, 28, 28)), ("default", (8, 3, 128, 128))]


def measure_speed(ext: Any, rounds: int, threads: List[int]) -> Dict[str, Any]:
    routes: Dict[str, Callable[[], Any]] = {"ctypes": _Nothing, "cpp_extension": lambda: _CppRoute(ext),
                                            "pure PyTorch": _Reference}
    results: Dict[str, Any] = {}
    gen = torch.Generator().manual_seed(0)
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for preset, shape in SHAPES:
            loss = LocalPhaseLoss.from_preset(preset)
            x, y = torch.rand(shape, generator=gen), torch.rand(shape, generator=gen)
            times: Dict[str, List[float]] = {r: [] for r in routes}
            values: Dict[str, Any] = {}

            def step(route: str) -> float:
                xs = x.clone().requires_grad_()
                with routes[route]():
                    t0 = time.perf_counter()
                    v = loss(xs, y)
                    v.backward()
                    dt = time.perf_counter() - t0
                values[route] = (v.detach(), xs.grad)
                return dt

            for _ in range(2):  # warm-up (caches, thread pools)
                for route in routes:
                    step(route)
            for _ in range(rounds):
                for route in routes:
                    times[route].append(step(route))
            same = (torch.equal(values["ctypes"][0], values["cpp_extension"][0])
                    and torch.equal(values["ctypes"][1], values["cpp_extension"][1]))
            row = {route: 1000 * statistics.median(t) for route, t in times.items()}
            key = f"threads={n_threads} {preset} {'x'.join(map(str, shape))}"
            results[key] = {"ms": row, "cpp_extension_over_ctypes": row["cpp_extension"] / row["ctypes"],
                            "ctypes_and_cpp_extension_bit_identical": same}
            print(f"{key}: " + ", ".join(f"{r} {ms:.2f} ms" for r, ms in row.items()) + f" (identical: {same})",
                  flush=True)
    return results


def call_overhead(ext: Any, calls: int = 20000) -> Dict[str, float]:
    """Microseconds per call of a kernel on an empty problem: the raw C entry through each
    binding, and the whole Python entry of the ctypes route (checks, layout) on a tiny one."""
    lib = _compiled._library()
    assert lib is not None
    fo = torch.zeros(1, 1, 1, 4, 3, dtype=torch.complex64)
    w = torch.ones(1, 12)
    sums = torch.zeros(1, dtype=torch.float64)
    fr = torch.view_as_real(fo)
    out: Dict[str, float] = {}

    def timed(fn: Callable[[], Any]) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            best = min(best, (time.perf_counter() - t0) / calls * 1e6)
        return best

    p = fr.data_ptr()
    out["ctypes raw entry"] = timed(lambda: lib.lpl_terms(0, p, p, 0, 0, w.data_ptr(), w.data_ptr(), w.data_ptr(), 0, 0,
                                                          1, 12, 12, 12, 1.0, 1.0, 0.0, 1e-8, sums.data_ptr()))
    out["cpp_extension raw entry"] = timed(lambda: ext.terms(0, fr, fr, False, False, w, w, w, 0, 1, 12, 12, 12, 1.0,
                                                             1.0, 0.0, 1e-8, torch.zeros(0, dtype=torch.float64)))
    ones = (torch.ones(4, 3), torch.ones(3), torch.ones(1))
    out["ctypes coefficient_terms, 12 coefficients"] = timed(
        lambda: _compiled.coefficient_terms(fo.clone(), fo.clone(), *ones, 1.0, 1.0, "wrapped", 0.0, 1e-4, True, True))
    with _CppRoute(ext):
        out["cpp_extension coefficient_terms, 12 coefficients"] = timed(
            lambda: _compiled.coefficient_terms(fo.clone(), fo.clone(), *ones, 1.0, 1.0, "wrapped", 0.0, 1e-4, True,
                                                True))
    for k, v in out.items():
        print(f"{k}: {v:.2f} us per call")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--builds", type=int, default=1, help="cold builds per route")
    parser.add_argument("--rounds", type=int, default=15, help="timed loss calls per route and shape")
    parser.add_argument("--threads", nargs="+", type=int, default=[torch.get_num_threads(), 1])
    parser.add_argument("--out", type=Path, default=ROOT / "evals" / "results" / "bench_build_route.json")
    args = parser.parse_args()
    if not _compiled.available():
        raise SystemExit(f"the ctypes kernels are unavailable here: {_compiled.status()}")
    load_before = os.getloadavg()[0]
    machine = describe("cpu")  # (before the speed runs change the thread count)
    from torch.utils.cpp_extension import load

    with tempfile.TemporaryDirectory() as ext_dir:
        builds = measure_builds(args.builds, Path(ext_dir))
        os.environ["TORCH_EXTENSIONS_DIR"] = ext_dir  # warm: built by the first measured build
        ext = load(name=EXT_NAME, sources=[str(CPP)], extra_include_paths=[str(_native.CSRC)],
                   extra_cflags=FP_FLAGS + _arch_flags(), extra_ldflags=["-fopenmp"], verbose=False)
        overhead = call_overhead(ext)
        speed = measure_speed(ext, args.rounds, args.threads)
    load_after = os.getloadavg()[0]
    payload = {
        "what": "first-use build time, warm start, behaviour without a compiler, and LocalPhaseLoss forward + "
                "backward per build route of the compiled kernels (ctypes: shipped; cpp_extension: the same C "
                "code through torch.utils.cpp_extension.load and at::parallel_for)",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "machine": machine,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "builds": builds,
        "call_overhead_us": overhead,
        "speed": speed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
