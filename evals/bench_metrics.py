"""Throughput of stftblur.lpc_si: images per second on batches of 512x512 grayscale images.

Usage:
    .venv/bin/python evals/bench_metrics.py [--batch 16] [--size 512] [--repeats 7] [--out FILE]

The batch is made of natural photographs shipped with scikit-image (camera, moon, brick, grass,
gravel, astronaut as gray, and their flips and blurred copies), because the sparse part of the
index (pixels above the energy threshold) depends on the content. Every configuration is run
once to warm up (the filter bank is built and cached then), then ``--repeats`` times; the
median and best times are reported. On the CPU the same run also times the floor the definition
imposes: one forward FFT and S x O = 24 inverse complex FFTs per image. The reference MATLAB
implementation takes about 0.47 s per 512x512 image on the project machine (a figure given to
the project with its LPC-SI task, not measured by this script or any other in this repository);
the target is 15x its throughput. On the CPU, lpc_si is timed with its compiled kernels (the
default where a C compiler exists) and on its pure-PyTorch path (what a user without one gets).

The machine is described in the output (platform, CPU count, torch version and threads) with
the load average before and after, since a busy shared machine slows every number down.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import stftblur  # noqa: E402
from stftblur import lpc_si  # noqa: E402
from stftblur.metrics import _lpc_native  # noqa: E402

MATLAB_SECONDS_PER_IMAGE = 0.47  # given to the project: reference lpc_si.m on a 512x512 image, this machine
TARGET_SPEEDUP = 15.0


def natural_batch(batch: int, size: int) -> torch.Tensor:
    """(batch, 1, size, size) gray photographs in [0, 1], deterministic."""
    from skimage import data, transform
    from skimage.color import rgb2gray
    from skimage.filters import gaussian

    sources = [data.camera(), data.moon(), data.brick(), data.grass(), data.gravel(), rgb2gray(data.astronaut())]
    sources = [s.astype(np.float64) / (255.0 if s.dtype == np.uint8 else 1.0) for s in sources]
    images: List[np.ndarray] = []
    i = 0
    while len(images) < batch:
        s = sources[i % len(sources)]
        variant = i // len(sources)
        if variant % 3 == 1:
            s = s[:, ::-1]
        elif variant % 3 == 2:
            s = gaussian(s, sigma=1.5)
        if s.shape != (size, size):
            s = transform.resize(s, (size, size), anti_aliasing=True)
        images.append(np.ascontiguousarray(s))
        i += 1
    return torch.from_numpy(np.stack(images))[:, None]


def timed(
    fns: Dict[str, Callable[[], Any]], repeats: int, device: torch.device
) -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    """Wall-clock and CPU (this process, all threads) seconds per call of each function. The
    functions alternate, so that a change of load on a shared machine hits them alike."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for fn in fns.values():
        fn()  # warm-up: caches, plans, allocator
    sync()
    wall: Dict[str, List[float]] = {name: [] for name in fns}
    cpu: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


def fft_floor(x: torch.Tensor, n_filters: int, per_call: int = 6) -> None:
    """The transforms the definition needs, and nothing else: 1 forward + n_filters inverse per
    image, the inverse ones in calls of ``per_call`` contiguous planes (batches that fit the
    cache, as lpc_si does for 512x512; one call over all 24 planes is about 2x slower here)."""
    spectrum = torch.fft.fft2(x[:, 0])
    for img in spectrum:
        planes = img.expand(per_call, -1, -1).contiguous()
        for _ in range(0, n_filters, per_call):
            torch.fft.ifft2(planes)


def fft_batch_sweep(size: int, repeats: int, batches: Tuple[int, ...] = (1, 2, 3, 6, 12, 24)) -> Dict[str, float]:
    """Milliseconds per plane of a batched inverse complex64 FFT of 24 (size x size) planes, in
    calls of ``b`` planes (minimum over ``repeats`` of the CPU time, with the current threads)."""
    planes = torch.randn(24, size, size, dtype=torch.complex64)
    out: Dict[str, float] = {}
    for b in batches:
        best = float("inf")
        for _ in range(repeats + 1):
            c0 = time.process_time()
            for start in range(0, 24, b):
                torch.fft.ifft2(planes[start : start + b])
            best = min(best, time.process_time() - c0)
        out[str(b)] = 1000.0 * best / 24
    return out


def pytorch_path(x: torch.Tensor) -> torch.Tensor:
    """lpc_si without its compiled kernels (what a user without a C compiler gets)."""
    _lpc_native.LIBRARY.enabled = False
    try:
        return lpc_si(x)
    finally:
        _lpc_native.LIBRARY.enabled = None


def breakdown(x: torch.Tensor, repeats: int) -> Dict[str, float]:
    """Wall-clock ms per image inside lpc_si: the inverse FFTs, the compiled kernels, the rest
    (product with the filters, forward FFT, sort), by wrapping the two calls; the median over
    ``repeats`` calls of each share."""
    shares: Dict[str, List[float]] = {"total": [], "inverse_ffts": [], "kernels": []}
    acc: Dict[str, float] = {}

    def timed_call(fn: Callable[..., Any], key: str) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*a, **k)
            acc[key] = acc.get(key, 0.0) + time.perf_counter() - t0
            return out
        return wrapper

    ifft2, accumulate = torch.fft.ifft2, _lpc_native.accumulate
    torch.fft.ifft2, _lpc_native.accumulate = timed_call(ifft2, "inverse_ffts"), timed_call(accumulate, "kernels")
    try:
        lpc_si(x)
        for _ in range(repeats):
            acc.clear()
            t0 = time.perf_counter()
            lpc_si(x)
            shares["total"].append(time.perf_counter() - t0)
            for key in ("inverse_ffts", "kernels"):
                shares[key].append(acc.get(key, 0.0))
    finally:
        torch.fft.ifft2, _lpc_native.accumulate = ifft2, accumulate
    out = {k: 1e3 * statistics.median(v) / x.shape[0] for k, v in shares.items()}
    out["rest"] = out["total"] - out["inverse_ffts"] - out["kernels"]
    return out


def machine() -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "stftblur": stftblur.__version__,
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--fft-sweep", action="store_true", help="also time inverse FFTs in batches of 1 to 24 planes")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the shares of lpc_si (inverse FFTs, compiled kernels, rest), float32, CPU")
    parser.add_argument("--out", type=Path, default=ROOT / "evals" / "results" / "bench_metrics.json")
    args = parser.parse_args()

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    x = natural_batch(args.batch, args.size)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    load_before = os.getloadavg()
    runs = []
    for device in devices:
        for name in args.dtypes.split(","):
            dtype = getattr(torch, name)
            xd = x.to(device, dtype)
            entry: Dict[str, Any] = {"device": device.type, "dtype": name}
            fns: Dict[str, Callable[[], Any]] = {"lpc_si": lambda: lpc_si(xd)}
            if device.type == "cpu":
                fns["fft_floor"] = lambda: fft_floor(xd, 24)
                fns["reference_path"] = lambda: pytorch_path(xd)
            all_times, cpu_times = timed(fns, args.repeats, device)
            times = all_times["lpc_si"]
            entry["seconds_per_batch"] = times
            entry["cpu_seconds_per_batch"] = cpu_times["lpc_si"]
            entry["images_per_s_median"] = args.batch / statistics.median(times)
            entry["images_per_s_best"] = args.batch / min(times)
            if device.type == "cpu":
                floor = all_times["fft_floor"]
                entry["fft_floor_seconds_per_batch"] = floor
                entry["fft_floor_cpu_seconds_per_batch"] = cpu_times["fft_floor"]
                entry["fft_floor_images_per_s_median"] = args.batch / statistics.median(floor)
                entry["fft_floor_images_per_s_best"] = args.batch / min(floor)
                entry["speedup_vs_matlab_median"] = entry["images_per_s_median"] * MATLAB_SECONDS_PER_IMAGE
                entry["lpc_si_over_fft_floor_median"] = statistics.median(times) / statistics.median(floor)
                entry["compiled_kernels"] = _lpc_native.LIBRARY.status()
                ref = all_times["reference_path"]
                entry["reference_path_seconds_per_batch"] = ref
                entry["reference_path_images_per_s_median"] = args.batch / statistics.median(ref)
            runs.append(entry)
            print(
                f"{device.type:4s} {name:8s} lpc_si {entry['images_per_s_median']:7.1f} img/s (median), "
                f"{entry['images_per_s_best']:7.1f} (best)"
                + (
                    f"; pure PyTorch {entry['reference_path_images_per_s_median']:7.1f} img/s"
                    f"; FFT floor {entry['fft_floor_images_per_s_median']:7.1f} img/s; "
                    f"{entry['speedup_vs_matlab_median']:.1f}x MATLAB"
                    if device.type == "cpu"
                    else ""
                ),
                flush=True,
            )
    sweep = None
    if args.fft_sweep:
        sweep = fft_batch_sweep(args.size, args.repeats)
        print("inverse FFT, CPU ms per plane by planes per call: " + ", ".join(f"{k}: {v:.2f}" for k, v in sweep.items()))
    shares = None
    if args.breakdown:
        shares = breakdown(x.float(), args.repeats)
        print("lpc_si float32, ms per image (median): " + ", ".join(f"{k} {v:.1f}" for k, v in shares.items()))
    result = {
        "benchmark": "lpc_si images per second",
        "command": "python evals/bench_metrics.py " + " ".join(sys.argv[1:]),
        "batch": args.batch,
        "size": [args.size, args.size],
        "channels": 1,
        "repeats": args.repeats,
        "inputs": "scikit-image photographs (camera, moon, brick, grass, gravel, astronaut gray), flipped and blurred copies",
        "matlab_reference_seconds_per_image": MATLAB_SECONDS_PER_IMAGE,
        "matlab_reference_source": "given to the project with its LPC-SI task (reference lpc_si.m timed on this machine); not measured by this script or any other in this repository",
        "target_images_per_s": TARGET_SPEEDUP / MATLAB_SECONDS_PER_IMAGE,
        "machine": machine(),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "runs": runs,
        "fft_cpu_ms_per_plane_by_batch": sweep,
        "breakdown_ms_per_image": shares,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
