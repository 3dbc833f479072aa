"""Optional compiled CPU kernels: build plain C once, load it with ctypes, fall back silently.

The local-phase loss (:mod:`stftblur.losses._compiled`) and LPC-SI
(:mod:`stftblur.metrics._lpc_native`) each keep a C source of their hot loops and a
:class:`NativeLibrary` for it; this module holds what they share: finding the compiler, the
flags, the cache, the lazy thread-safe build with its status, and the thread pool that splits a
kernel call over ``torch.get_num_threads()`` Python threads (ctypes releases the GIL).

Convention:
    The system's C compiler (``$CC``, else ``cc``/``gcc``/``clang``) builds a shared library (no
    PyTorch headers, so a build takes about a second) into ``$STFTBLUR_CACHE`` (default
    ``~/.cache/stftblur``) under a hash of the source, the flags and the compiler's version.
    Instruction-set flags follow ``torch.backends.cpu.get_cpu_capability()``; floating-point
    contraction is off, so a kernel rounds operation by operation as its pure-PyTorch reference
    does. Without a compiler, when the build fails, or with ``STFTBLUR_COMPILED=0``, the library
    is unavailable, the caller takes its reference path and :meth:`NativeLibrary.status` says why.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch

__all__: List[str] = []

#: Work items (coefficients, pixels) below which a kernel call is not split over threads.
PARALLEL_MIN_WORK = 1 << 16

_FLAGS = ["-O3", "-shared", "-fPIC", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-fopenmp-simd"]


def _is_x86() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")


def _arch_flags() -> List[str]:
    if sys.platform != "linux" or not _is_x86():
        return []
    cap = torch.backends.cpu.get_cpu_capability()
    if cap.startswith("AVX512"):
        return ["-mavx2", "-mfma", "-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw"]
    if cap.startswith("AVX2"):
        return ["-mavx2", "-mfma"]
    return []


def _compiler() -> Optional[str]:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cache_dir() -> Path:
    root = os.environ.get("STFTBLUR_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "stftblur"


def disabled_by_environment() -> bool:
    """True when ``STFTBLUR_COMPILED`` is 0/false/no/off."""
    return os.environ.get("STFTBLUR_COMPILED", "1").strip().lower() in ("0", "false", "no", "off")


def build(name: str, source: str, openmp: bool = False) -> Tuple[Optional[ctypes.CDLL], str]:
    """Compile ``source`` (cached) and load it: (library, status) or (None, why not).

    ``openmp``: compile with ``-fopenmp`` where that builds (the library then shares the OpenMP
    runtime PyTorch has loaded, found by its soname), else without it.
    """
    if openmp:
        lib, status = _build_with(name, source, ["-fopenmp"])
        if lib is not None:
            return lib, status + " (OpenMP)"
    return _build_with(name, source, [])


def _build_with(name: str, source: str, extra: List[str]) -> Tuple[Optional[ctypes.CDLL], str]:
    if disabled_by_environment():
        return None, "disabled by STFTBLUR_COMPILED=0"
    cc = _compiler()
    if cc is None:
        return None, "no C compiler found ($CC, cc, gcc, clang)"
    flags = _FLAGS + extra + _arch_flags()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except Exception as exc:  # noqa: BLE001 (any failure means: no compiled path)
        return None, f"{cc} --version failed: {exc}"
    key = hashlib.sha256("\n".join([source, " ".join(flags), version]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"{name}_{key}.so"
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                src = Path(tmp) / f"{name}.c"
                src.write_text(source)
                out = Path(tmp) / target.name
                proc = subprocess.run([cc, *flags, str(src), "-o", str(out), "-lm"],
                                      capture_output=True, text=True, timeout=300)
                if proc.returncode != 0:
                    return None, f"build failed: {proc.stderr.strip()[-2000:]}"
                os.replace(out, target)  # atomic: concurrent builders write the same file
        except Exception as exc:  # noqa: BLE001
            return None, f"build failed: {exc}"
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        return None, f"loading {target} failed: {exc}"
    return lib, f"compiled: {target}"


class NativeLibrary:
    """One C source, built on first use; ``declare`` sets the ctypes signatures once it loads.

    Convention:
        :meth:`library` builds at most once per process (thread-safe) and returns None where
        the build is impossible; :attr:`enabled` = False forces the caller's reference path
        (tests, benchmarks, runs that must keep the path they started with), None is the
        default (compiled when available).
    """

    def __init__(self, name: str, source: str, declare: Callable[[ctypes.CDLL], None], openmp: bool = False) -> None:
        self.name, self.source, self.declare, self.openmp = name, source, declare, openmp
        self.enabled: Optional[bool] = None
        self._lib: Optional[ctypes.CDLL] = None
        self._status = "not built yet"
        self._tried = False
        self._lock = threading.Lock()

    def library(self) -> Optional[ctypes.CDLL]:
        """The loaded library, or None (not built, or forced off by ``enabled = False``)."""
        if self.enabled is False:
            return None
        if not self._tried:
            with self._lock:
                if not self._tried:
                    lib, self._status = build(self.name, self.source, self.openmp)
                    if lib is not None:
                        self.declare(lib)
                    self._lib, self._tried = lib, True
        return self._lib

    def available(self) -> bool:
        """Whether the compiled kernels are in use (building them on the first call)."""
        return self.library() is not None

    def status(self) -> str:
        """Why the kernels are (not) in use: the library path or the build error."""
        if self.enabled is False:
            return "disabled by set_enabled(False)"
        self.library()
        return self._status


_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0
_pool_pid = 0


def thread_count(total: int, work_per_item: int) -> int:
    """Threads worth using for ``total`` items of ``work_per_item`` each: at most
    ``torch.get_num_threads()``, one per item and one per :data:`PARALLEL_MIN_WORK` of work."""
    return max(1, min(torch.get_num_threads(), total, (total * work_per_item) // PARALLEL_MIN_WORK))


def run_parallel(fn: Callable[[int, int], None], total: int, work_per_item: int) -> None:
    """fn(begin, end) over [0, total), split over :func:`thread_count` Python threads."""
    global _pool, _pool_size, _pool_pid
    threads = thread_count(total, work_per_item)
    if threads <= 1:
        fn(0, total)
        return
    if _pool is None or _pool_size < threads or _pool_pid != os.getpid():
        # (A pool inherited through fork has no threads in the child: make a new one.)
        _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="stftblur")
        _pool_size, _pool_pid = threads, os.getpid()
    bounds = [total * t // threads for t in range(threads + 1)]
    futures = [_pool.submit(fn, bounds[t], bounds[t + 1]) for t in range(1, threads)]
    fn(bounds[0], bounds[1])
    for f in futures:
        f.result()
