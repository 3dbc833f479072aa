"""Optional compiled CPU kernels: build the package's C sources once, load them with ctypes.

The local-phase loss (:mod:`stftblur.losses._compiled`) and LPC-SI
(:mod:`stftblur.metrics._lpc_native`) each have a C source in ``stftblur/csrc/`` (shipped in
the wheel, found next to this module) and a :class:`NativeLibrary` for it; this module holds
what they share: finding the compiler, the flags, the cache, the lazy thread-safe build with its
status, the checks of the tensors a kernel is given, the status codes the C entries return, and
the thread pool that splits a kernel call over Python threads (ctypes releases the GIL).

Convention:
    The system's C compiler (``$CC``, else ``cc``/``gcc``/``clang``) builds a shared library (no
    PyTorch headers, so a build takes about a second) into ``$STFTBLUR_CACHE`` (default
    ``~/.cache/stftblur``) under a hash of the sources, the flags and the compiler's version.
    Instruction-set flags follow ``torch.backends.cpu.get_cpu_capability()``; floating-point
    contraction is off, so a kernel rounds operation by operation as its pure-PyTorch reference
    does; ``$STFTBLUR_CFLAGS`` adds flags (the sanitizer tests use it). Without a compiler, when
    the build fails, or with ``STFTBLUR_COMPILED=0``, the library is unavailable, the caller
    takes its reference path and :meth:`NativeLibrary.status` says why. The tests build the same
    sources with ``-Wall -Wextra -Werror`` (:func:`compile_command`); a user's build leaves
    warnings as warnings, so that a newer compiler's new warning cannot cost the kernels.

    Nothing here changes process-wide state: a kernel call decides how many of its own worker
    threads to use from the size of its work (:func:`thread_count`, at most
    ``torch.get_num_threads()``, which it only reads).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch

__all__: List[str] = []

#: Work items (coefficients, pixels) below which a kernel call is not split over threads.
PARALLEL_MIN_WORK = 1 << 16

#: The C sources and their shared header, inside the package (shipped as package data).
CSRC = Path(__file__).resolve().parent / "csrc"

#: Status codes of the C entries (stftblur/csrc/stftblur_native.h).
OK, EINVAL, ENOMEM = 0, 1, 2

_FLAGS = ["-O3", "-shared", "-fPIC", "-fvisibility=hidden", "-fno-math-errno", "-fno-trapping-math",
          "-ffp-contract=off", "-fopenmp-simd"]

#: What the tests add to :data:`_FLAGS` (tests/test_native.py).
WARNING_FLAGS = ["-Wall", "-Wextra", "-Werror"]


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


def _env_flags() -> List[str]:
    return shlex.split(os.environ.get("STFTBLUR_CFLAGS", ""))


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


def source_path(source: str) -> Path:
    """The path of a C source of the package (``"local_phase.c"``, ``"lpc_si.c"``)."""
    path = CSRC / source
    if not path.is_file():
        raise FileNotFoundError(f"the C source {source!r} is not in {CSRC} (an incomplete installation?)")
    return path


def sources() -> List[Path]:
    """Every C source and header of the package."""
    return sorted(p for p in CSRC.iterdir() if p.suffix in (".c", ".h"))


def compile_command(cc: str, source: str, output: Path, extra: Sequence[str] = ()) -> List[str]:
    """The command that builds ``source`` into the shared library ``output``: the project's
    flags, then ``extra``, the instruction-set flags and ``$STFTBLUR_CFLAGS``."""
    return [cc, *_FLAGS, *extra, *_arch_flags(), *_env_flags(), f"-I{CSRC}", str(source_path(source)),
            "-o", str(output), "-lm"]


def build(name: str, source: str, openmp: bool = False) -> Tuple[Optional[ctypes.CDLL], str]:
    """Compile ``source`` (a file of ``stftblur/csrc``; cached) and load it: (library, status)
    or (None, why not).

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
    try:
        texts = [source_path(source).read_text()] + [p.read_text() for p in sources() if p.suffix == ".h"]
    except OSError as exc:
        return None, f"reading the C source failed: {exc}"
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except Exception as exc:  # noqa: BLE001 (any failure means: no compiled path)
        return None, f"{cc} --version failed: {exc}"
    flags = [*_FLAGS, *extra, *_arch_flags(), *_env_flags()]
    key = hashlib.sha256("\n".join([*texts, " ".join(flags), version]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"{name}_{key}.so"
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                out = Path(tmp) / target.name
                proc = subprocess.run(compile_command(cc, source, out, extra), capture_output=True, text=True,
                                      timeout=300)
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
    """One C source of ``stftblur/csrc``, built on first use; ``declare`` sets the ctypes
    signatures once it loads.

    Convention:
        :meth:`library` builds at most once per process (thread-safe) and returns None where
        the build is impossible; :attr:`enabled` = False forces the caller's reference path
        for tests and benchmarks only (no library call sets it: a run or a loss chooses its
        kernels with the ``kernels=`` option), None is the default (compiled when available).
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
                    lib, status = build(self.name, self.source, self.openmp)
                    if lib is not None:
                        self.declare(lib)
                    self._lib, self._status = lib, status
                    self._tried = True  # last: another thread reads _lib once it sees _tried
        return self._lib

    def available(self) -> bool:
        """Whether the compiled kernels are in use (building them on the first call)."""
        return self.library() is not None

    def status(self) -> str:
        """Why the kernels are (not) in use: the library path or the build error."""
        if self.enabled is False:
            return "disabled (enabled = False)"
        self.library()
        return self._status


def check_status(code: int, entry: str) -> None:
    """Raise for a C entry's status code: MemoryError for a failed allocation (nothing was
    skipped: the results are incomplete and not returned), ValueError for rejected arguments."""
    if code == OK:
        return
    if code == ENOMEM:
        raise MemoryError(f"{entry}: the compiled kernel could not allocate its scratch memory")
    if code == EINVAL:
        raise ValueError(f"{entry}: the compiled kernel rejected its sizes (its Python checks let them through)")
    raise RuntimeError(f"{entry}: the compiled kernel returned the unknown status {code}")


# ---------------------------------------------------------------------------------------------
# Checks of what a kernel entry is given, before any pointer is handed to C.


def check_tensor(
    t: object,
    name: str,
    dtype: Optional[torch.dtype] = None,
    dtypes: Sequence[torch.dtype] = (),
    dim: Optional[int] = None,
    shape: Optional[Sequence[int]] = None,
    contiguous: bool = False,
    cpu: bool = True,
) -> torch.Tensor:
    """``t`` as a tensor meeting the conditions; TypeError (not a tensor, dtype) or ValueError
    (device, dimensions, shape, contiguity) naming ``name`` otherwise. ``cpu=True`` (what a
    kernel reads through a pointer) also refuses sparse tensors and lazily conjugated or
    negated views, whose memory does not hold their values."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if cpu and t.layout != torch.strided:
        raise ValueError(f"{name} must be a strided (dense) tensor, got layout {t.layout}")
    if cpu and (t.is_conj() or t.is_neg()):
        raise ValueError(f"{name} must not be a lazily conjugated or negated view (resolve_conj / resolve_neg)")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {t.dtype}")
    if dtypes and t.dtype not in dtypes:
        raise TypeError(f"{name} must have one of the dtypes {', '.join(map(str, dtypes))}, got {t.dtype}")
    if cpu and t.device.type != "cpu":
        raise ValueError(f"{name} must be on the CPU, got {t.device}")
    if dim is not None and t.dim() != dim:
        raise ValueError(f"{name} must have {dim} dimensions, got shape {tuple(t.shape)}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous, got strides {t.stride()} for shape {tuple(t.shape)}")
    return t


def check_int(value: object, name: str, minimum: Optional[int] = None) -> int:
    """``value`` as an int (bool refused), at least ``minimum``; TypeError / ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_float(value: object, name: str) -> float:
    """``value`` (a Python or 0-d real number) as a finite float; TypeError / ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    out = float(value)
    if out != out or out in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def storage_span(t: torch.Tensor) -> Tuple[int, int]:
    """[first, last] byte addresses of ``t``'s storage."""
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.data_ptr() + storage.nbytes() - 1


def check_span(t: torch.Tensor, name: str, last_element: int) -> None:
    """The elements 0..``last_element`` (in ``t``'s element size, from ``t.data_ptr()``) that a
    kernel will address lie inside ``t``'s storage; ValueError naming ``name`` otherwise."""
    first, last = storage_span(t)
    end = t.data_ptr() + (last_element + 1) * t.element_size() - 1
    if t.data_ptr() < first or end > last:
        raise ValueError(f"{name}: the kernel would address {last_element + 1} elements, beyond its storage")


def _byte_range(t: torch.Tensor) -> Tuple[int, int]:
    extent = sum((d - 1) * s for d, s in zip(t.shape, t.stride()))
    return t.data_ptr(), t.data_ptr() + (extent + 1) * t.element_size()


def overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the memory spans of two CPU tensors intersect (conservative for interleaved views)."""
    if not a.numel() or not b.numel():
        return False
    (a0, a1), (b0, b1) = _byte_range(a), _byte_range(b)
    return a0 < b1 and b0 < a1


def check_disjoint(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    """``a`` and ``b`` (one of them written by a kernel) do not overlap in memory; ValueError
    naming them otherwise."""
    if overlaps(a, b):
        raise ValueError(f"{names} must not overlap in memory (the kernel writes them)")


# ---------------------------------------------------------------------------------------------
# Worker threads of the kernels that run on Python threads (ctypes releases the GIL).

_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0
_pool_pid = 0
_pool_lock = threading.Lock()


def thread_count(total: int, work_per_item: int) -> int:
    """Threads worth using for ``total`` items of ``work_per_item`` each: at most
    ``torch.get_num_threads()``, one per item and one per :data:`PARALLEL_MIN_WORK` of work
    (so a small problem runs on the calling thread alone)."""
    return max(1, min(torch.get_num_threads(), total, (total * work_per_item) // PARALLEL_MIN_WORK))


def _get_pool(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_size, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_size < threads or _pool_pid != os.getpid():
            # (A pool inherited through fork has no threads in the child: make a new one. A pool
            # too small is replaced; its queued work still runs.)
            old, forked = _pool, _pool_pid != os.getpid()
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="stftblur")
            _pool_size, _pool_pid = threads, os.getpid()
            if old is not None and not forked:
                old.shutdown(wait=False)
        return _pool


def run_parallel(fn: Callable[[int, int], None], total: int, work_per_item: int) -> None:
    """fn(begin, end) over [0, total), split over :func:`thread_count` threads (the calling
    thread takes the first range). Safe to call from several threads at once."""
    threads = thread_count(total, work_per_item)
    if threads <= 1:
        fn(0, total)
        return
    pool = _get_pool(threads)
    bounds = [total * t // threads for t in range(threads + 1)]
    futures = [pool.submit(fn, bounds[t], bounds[t + 1]) for t in range(1, threads)]
    try:
        fn(bounds[0], bounds[1])
    finally:
        errors = []
        for f in futures:
            try:
                f.result()
            except BaseException as exc:  # noqa: BLE001 (re-raised below, after every range ended)
                errors.append(exc)
    if errors:
        raise errors[0]
