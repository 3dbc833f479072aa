"""The C sources of the compiled kernels (stftblur/csrc): files of the package, built with
warnings as errors, their test cases run under AddressSanitizer and UndefinedBehaviorSanitizer,
every Python entry checking what it is given before a pointer reaches C, allocation failures
raising, concurrent calls giving the serial values, and no call changing the thread count.

:func:`run_cases` holds the kernels' test cases; it runs here in-process and, in
:func:`test_kernel_cases_under_sanitizers`, in a subprocess whose kernels are built with
``-fsanitize=address,undefined`` (``STFTBLUR_CFLAGS``) and whose Python has the ASan runtime
preloaded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, List, Optional

import pytest
import torch

from stftblur import _native
from stftblur.losses import _compiled
from stftblur.metrics import _lpc_native

ROOT = Path(__file__).resolve().parents[1]

needs_cc = pytest.mark.skipif(_native._compiler() is None,
                              reason="no C compiler ($CC, cc, gcc, clang): the kernels are not built here")
needs_kernels = pytest.mark.skipif(not (_compiled.available() and _lpc_native.LIBRARY.available()),
                                   reason=f"compiled kernels unavailable: {_compiled.status()}")

SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]


# ---------------------------------------------------------------------------------------------
# The sources are package files, and build with warnings as errors.


def test_sources_are_files_of_the_package():
    names = {p.name for p in _native.sources()}
    assert {"local_phase.c", "lpc_si.c", "stftblur_native.h"} <= names
    assert _native.CSRC == Path(_native.__file__).resolve().parent / "csrc"
    assert _native.source_path(_compiled.SOURCE).is_file() and _native.source_path(_lpc_native.SOURCE).is_file()
    for module in (_native, _compiled, _lpc_native):  # no C left in Python strings
        text = Path(module.__file__).read_text()
        assert "#include" not in text and "int64_t" not in text, module.__name__
    with pytest.raises(FileNotFoundError, match="not in"):
        _native.source_path("missing.c")


def test_status_codes_match_the_header():
    header = (_native.CSRC / "stftblur_native.h").read_text()
    codes = {name: int(value) for name, value in re.findall(r"#define STFTBLUR_(OK|EINVAL|ENOMEM) (\d+)", header)}
    assert codes == {"OK": _native.OK, "EINVAL": _native.EINVAL, "ENOMEM": _native.ENOMEM}


@needs_cc
@pytest.mark.parametrize("source,extra", [("local_phase.c", []), ("lpc_si.c", []), ("lpc_si.c", ["-fopenmp"])])
def test_sources_compile_with_warnings_as_errors(tmp_path, source, extra):
    cc = _native._compiler()
    if extra:  # the library is built without OpenMP where the compiler has none: so is this test
        plain = subprocess.run(_native.compile_command(cc, source, tmp_path / "plain.so", extra), capture_output=True,
                               text=True, timeout=300)
        if plain.returncode:
            pytest.skip(f"{cc} does not build with {' '.join(extra)} here: {plain.stderr.strip()[-300:]}")
    cmd = _native.compile_command(cc, source, tmp_path / "out.so", [*_native.WARNING_FLAGS, *extra])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
    assert (tmp_path / "out.so").stat().st_size > 0


@needs_cc
def test_c_entries_reject_impossible_sizes():
    """The second line of defence: C itself refuses sizes no tensor can have."""
    lib = _compiled._library()
    assert lib is not None
    assert lib.lpl_terms(7, None, None, 0, 0, None, None, None, 0, 1, 1, 1, 1, 1, 1.0, 1.0, 0.0, 1e-8, None) == \
        _native.EINVAL
    # two patches of 4 at stride 2 need 6 rows, not 4
    assert lib.lpl_overlap_add(None, None, None, 0, 1, 4, 4, 2, 2, 4, 4, 2, 0, 0, 0, 0, 0) == _native.EINVAL
    lpc = _lpc_native.LIBRARY.library()
    assert lpc is not None
    assert lpc.lpc_thresholds_mt_f32(None, 1, 4, 4, 2, None, 1) == _native.EINVAL  # border leaves no pixel
    assert lpc.lpc_product_f64(None, None, 1, 1, 2, 1, 2, 4, None, 1) == _native.EINVAL  # orientations 1..3 of 2
    with pytest.raises(ValueError, match="rejected"):
        _native.check_status(_native.EINVAL, "lpl_terms")
    with pytest.raises(MemoryError, match="could not allocate"):
        _native.check_status(_native.ENOMEM, "lpc_accumulate")


# ---------------------------------------------------------------------------------------------
# The kernels' test cases (also run under the sanitizers).


def _reference_terms() -> Callable:
    try:
        from stftblur.losses._fused import _coefficient_terms
    except ImportError:  # before the fused pass had its own module
        from stftblur.losses.local_phase import _coefficient_terms  # type: ignore[attr-defined,no-redef]
    return _coefficient_terms


def _spectra(shape, gen, zeros=True) -> torch.Tensor:
    z = torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
    if zeros and z.numel() > 3:
        z.view(-1)[:: 3] = 0  # exact zeros: no phase, the tapered gradient
    return z


def _terms_layouts(gen) -> List[tuple]:
    """(name, fo, ft) pairs of the layouts the kernel takes directly or after one copy."""
    out = []
    a, b = _spectra((2, 3, 2, 4, 3), gen), _spectra((2, 3, 2, 4, 3), gen)
    out.append(("contiguous", a, b))
    a, b = _spectra((2, 3, 2, 3, 4), gen), _spectra((2, 3, 2, 3, 4), gen)
    out.append(("swapped", a.transpose(-1, -2), b.transpose(-1, -2)))
    a, b = _spectra((2, 3, 2, 4, 5), gen), _spectra((2, 3, 2, 4, 5), gen)
    out.append(("strided rows", a[..., :3], b[..., :3]))
    a, b = _spectra((3, 4, 2, 4, 3), gen), _spectra((3, 4, 2, 4, 3), gen)
    out.append(("uneven lead strides", a[:, ::2], b[:, ::2]))
    a, b = _spectra((1, 3, 2, 4, 3), gen), _spectra((1, 3, 2, 4, 3), gen)
    out.append(("expanded", a.expand(2, 3, 2, 4, 3), b.expand(2, 3, 2, 4, 3)))
    out.append(("different strides", _spectra((2, 5, 3), gen), _spectra((2, 3, 5), gen).transpose(-1, -2)))
    out.append(("one coefficient", _spectra((1, 1, 1, 1, 1), gen, zeros=False), _spectra((1, 1, 1, 1, 1), gen)))
    out.append(("three dimensions", _spectra((3, 4, 5), gen), _spectra((3, 4, 5), gen)))
    out.append(("no images", _spectra((0, 2, 2, 4, 3), gen), _spectra((0, 2, 2, 4, 3), gen)))
    return out


def _terms_cases(check: Callable[[bool, str], None]) -> None:
    reference = _reference_terms()
    gen = torch.Generator().manual_seed(0)
    for name, fo, ft in _terms_layouts(gen):
        p, q = fo.shape[-2:]
        weights = (torch.rand(p, q, generator=gen), torch.rand(q, generator=gen), torch.rand(1, generator=gen))
        for distance in ("wrapped", "raw", "cosine"):
            for offset in ((0.0, 0.3) if distance == "raw" else (0.0,)):
                for need_o, need_t in ((True, True), (True, False), (False, True), (False, False)):
                    args = (*weights, 0.7, 1.3, distance, offset, 1e-4, need_o, need_t)
                    got = _compiled.coefficient_terms(fo.clone(), ft.clone(), *args)
                    check(got is not None, f"{name}: the kernel served")
                    what = f"{name}, {distance}, offset {offset}, grads {need_o}/{need_t}"
                    if fo.numel() == 0:  # (the reference has no empty case)
                        check(got[0].shape == (0,) and all(g is None or g.shape == fo.shape for g in got[1:]), what)
                        continue
                    want = reference(fo.clone(), ft.clone(), *args)
                    v, v_ref = got[0], want[0]
                    check(v.shape == v_ref.shape and bool(torch.allclose(v, v_ref, rtol=1e-5, atol=1e-6)),
                          f"{what}: values")
                    for g, g_ref in zip(got[1:], want[1:]):
                        check((g is None) == (g_ref is None), f"{what}: gradients asked for")
                        if g is not None:
                            scale = g_ref.abs().max().item() if g_ref.numel() else 0.0
                            check(g.shape == g_ref.shape and bool((g - g_ref).abs().max() <= 1e-5 * scale + 1e-30)
                                  if g.numel() else g.shape == g_ref.shape, f"{what}: gradients")


def _overlap_reference(patches, window, height, width, stride):
    """Window and overlap-add, patch by patch."""
    n, k, l, r, c = patches.shape
    if window is not None:
        patches = patches * window[:r]
    out = torch.zeros(n, height, width, dtype=patches.dtype)
    for i in range(k):
        for j in range(l):
            out[:, i * stride : i * stride + r, j * stride : j * stride + c] += patches[:, i, j]
    return out


def _overlap_cases(check: Callable[[bool, str], None]) -> None:
    gen = torch.Generator().manual_seed(1)
    cases = []
    for n, k, l, r, c, s in ((2, 3, 4, 5, 6, 2), (1, 4, 3, 4, 4, 1), (2, 2, 2, 3, 3, 3), (1, 3, 2, 5, 4, 3),
                             (3, 1, 1, 1, 1, 1), (1, 1, 1, 7, 2, 5), (0, 2, 2, 3, 3, 1)):
        h, w = (k - 1) * s + r, (l - 1) * s + c
        p = torch.randn(n, k, l, r, c, generator=gen)
        win = torch.rand(r, c, generator=gen)
        cases += [(f"{tuple(p.shape)} s{s}", p, win, h, w, s), (f"{tuple(p.shape)} s{s} no window", p, None, h, w, s),
                  (f"{tuple(p.shape)} s{s} larger image", p, win, h + 2, w + 1, s)]
    base = torch.randn(2, 4, 3, 6, 5, generator=gen)  # (n, L, K, C, R): transposed patches
    cases.append(("transposed", base.transpose(1, 2).transpose(3, 4), torch.rand(5, 6, generator=gen), 11, 12, 2))
    wide = torch.randn(2, 3, 3, 4, 10, generator=gen)
    cases.append(("strided columns", wide[..., ::2], torch.rand(4, 5, generator=gen), 8, 9, 2))
    cases.append(("window with more rows", torch.randn(2, 3, 3, 2, 4, generator=gen),
                  torch.rand(4, 4, generator=gen), 8, 10, 3))
    cases.append(("float64 window", torch.randn(1, 2, 2, 3, 3, generator=gen),
                  torch.rand(3, 3, generator=gen, dtype=torch.float64), 5, 5, 2))
    for name, p, win, h, w, s in cases:
        got = _compiled.overlap_add(p, win, h, w, s)
        check(got is not None, f"overlap_add {name}: the kernel served")
        want = _overlap_reference(p, None if win is None else win.float(), h, w, s)
        check(got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-5, atol=1e-5)),
              f"overlap_add {name}")


def _accumulate_reference(resp, border, weights, num, den):
    """LPC-SI's accumulation written out in float64 PyTorch."""
    r = resp.to(torch.complex128)
    mag = r[0].abs()
    h, w = mag.shape[-2:]
    inner = mag[..., border : h - border, border : w - border].flatten(-2)
    thr = inner.mean(-1) + 2 * (inner.std(-1, unbiased=True) if inner.shape[-1] > 1 else 0 * inner.mean(-1))
    e = (mag - thr[..., None, None]).clamp_min(0)
    z = torch.ones_like(r[0])
    for s, ws in enumerate(weights.tolist()):
        v = r[s] if ws > 0 else r[s].conj()
        for _ in range(abs(ws)):
            z = z * v
    a = z.abs()
    cs = torch.where(a > 0, z.real / a.clamp_min(1e-300), torch.ones_like(a)).clamp_min(0)
    selected = mag > thr[..., None, None]
    num += (cs * e * selected).sum(1)
    den += (e * selected).sum(1)


def _lpc_cases(check: Callable[[bool, str], None]) -> None:
    lib = _lpc_native.LIBRARY.library()
    check(lib is not None, "the LPC-SI kernels built")
    gen = torch.Generator().manual_seed(2)
    for dtype in (torch.complex64, torch.complex128):
        real = torch.float32 if dtype == torch.complex64 else torch.float64
        for b, h, w in ((1, 1, 1), (2, 5, 7), (1, 50, 45)):
            spectrum = _spectra((b, h, w), gen, zeros=False).to(dtype)
            gains = torch.rand(3, 5, h, w, generator=gen, dtype=real)
            for o0, n_o in ((0, 5), (3, 2), (4, 1), (5, 0)):
                got = _lpc_native.product(spectrum, gains, o0, n_o)
                want = spectrum[None, :, None] * gains[:, None, o0 : o0 + n_o]
                check(torch.equal(got, want), f"product {dtype} {(b, h, w)} {o0}+{n_o}")
        for (s, b, o, h, w), border, weights in (((1, 1, 1, 1, 1), 0, [1]), ((3, 2, 4, 7, 6), 2, [1, -3, 2]),
                                                 ((2, 1, 3, 9, 10), 0, [2, -1]), ((3, 2, 1, 1, 12), 0, [0, 1, -1])):
            resp = _spectra((s, b, o, h, w), gen, zeros=False).to(dtype)
            wt = torch.tensor(weights, dtype=torch.int64)
            out = []
            for openmp in (True, False):
                num, den = torch.zeros(b, h, w, dtype=torch.float64), torch.full((b, h, w), 0.5, dtype=torch.float64)
                with _lpc_path(lib, openmp):
                    _lpc_native.accumulate(resp, border, wt, num, den)
                out.append((num, den))
            what = f"accumulate {dtype} {(s, b, o, h, w)} border {border}"
            check(torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1]),
                  f"{what}: threaded and range entries agree")
            if dtype == torch.complex128:
                num, den = torch.zeros(b, h, w, dtype=torch.float64), torch.full((b, h, w), 0.5, dtype=torch.float64)
                _accumulate_reference(resp, border, wt, num, den)
                check(bool(torch.allclose(out[0][0], num, rtol=1e-9, atol=1e-9)
                           and torch.allclose(out[0][1], den, rtol=1e-9, atol=1e-9)), f"{what}: reference")
        # A row scratch that cannot be allocated raises, on both entries; nothing is skipped.
        resp = _spectra((3, 1, 2, 6, 5), gen, zeros=False).to(dtype)
        for openmp in (True, False):
            num, den = torch.zeros(1, 6, 5, dtype=torch.float64), torch.zeros(1, 6, 5, dtype=torch.float64)
            try:
                with _lpc_path(lib, openmp):
                    _lpc_native.accumulate(resp, 1, torch.tensor([1, -3, 2]), num, den, _scratch=1 << 60)
            except MemoryError:
                pass
            else:
                check(False, f"accumulate {dtype} (openmp={openmp}) with an impossible scratch raised no MemoryError")


class _lpc_path:
    """Run accumulate through the OpenMP entries (``openmp=True``) or the range entries on
    Python threads, whichever way the library was built."""

    def __init__(self, lib, openmp: bool) -> None:
        self.lib, self.openmp = lib, openmp

    def __enter__(self) -> None:
        self.saved = self.lib.__dict__.get("lpc_openmp")
        if not self.openmp:
            self.lib.lpc_openmp = lambda: 0

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            self.lib.lpc_openmp = self.saved
        else:
            self.lib.__dict__.pop("lpc_openmp", None)


def _public_cases(check: Callable[[bool, str], None]) -> None:
    from stftblur import LocalPhaseLoss, lpc_si

    gen = torch.Generator().manual_seed(3)
    for preset, shape, options in (("default", (2, 1, 16, 16), {}), ("paper-code", (3, 2, 28, 28), {}),
                                   ("default", (1, 3, 21, 19), {"stride": 3, "window": None}),
                                   ("default", (1, 1, 16, 16), {"phase_distance": "raw"}),
                                   ("paper-text", (2, 1, 17, 23), {"phase_distance": "cosine"})):
        x = torch.rand(shape, generator=gen, requires_grad=True)
        y = torch.rand(shape, generator=gen, requires_grad=True)
        loss = LocalPhaseLoss.from_preset(preset, reduction="none", **options)(x, y)
        loss.sum().backward()
        check(bool(torch.isfinite(loss).all() and torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()),
              f"LocalPhaseLoss {preset} {shape}")
    for shape, dtype in (((2, 1, 40, 33), torch.float32), ((1, 3, 24, 24), torch.float64),
                         ((1, 1, 64, 48), torch.float32)):
        x = torch.rand(shape, generator=gen, dtype=dtype)
        si, lpc = lpc_si(x, return_map=True)
        check(bool(torch.isfinite(si).all() and torch.isfinite(lpc).all()), f"lpc_si {shape} {dtype}")


def run_cases(sanitized: bool = False) -> List[str]:
    """Every kernel on small tensors and edge shapes against its reference; the failures."""
    failures: List[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            failures.append(what)

    for lib in (_compiled.LIBRARY, _lpc_native.LIBRARY):
        check(lib.available(), f"{lib.name}: {lib.status()}")
        if sanitized:
            check(os.environ["STFTBLUR_CACHE"] in lib.status(),
                  f"{lib.name} built in the sanitizer cache: {lib.status()}")
    if failures:
        return failures
    _terms_cases(check)
    _overlap_cases(check)
    _lpc_cases(check)
    _public_cases(check)
    if sanitized:
        maps = Path("/proc/self/maps").read_text()
        check("libasan" in maps or "asan" in maps, "the ASan runtime is loaded")
        check("ubsan" in maps or "libasan" in maps, "the UBSan runtime is loaded")
    return failures


@needs_kernels
def test_kernel_cases():
    assert run_cases() == []


def _sanitizer_runtime(cc: str) -> Optional[str]:
    for name in ("libasan.so", "libclang_rt.asan-x86_64.so", "libclang_rt.asan.so"):
        out = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
        if out and os.path.isabs(out) and os.path.exists(out):
            return out
    return None


@pytest.fixture(scope="module")
def sanitizer_cache(tmp_path_factory) -> Path:
    """One cache of sanitizer builds for the module's subprocesses (built once)."""
    return tmp_path_factory.mktemp("sanitized")


def _sanitized_run(cache: Path, code: str) -> subprocess.CompletedProcess:
    cc = _native._compiler()
    assert cc is not None
    runtime = _sanitizer_runtime(cc)
    if runtime is None:
        if os.environ.get("CI"):
            pytest.fail(f"{cc} has no AddressSanitizer runtime, and CI is set")
        pytest.skip(f"{cc} has no AddressSanitizer runtime to preload")
    # libstdc++ too: ASan intercepts __cxa_throw and needs the real one at start-up (C++
    # extensions that PyTorch imports on the way, such as triton's, throw while loading).
    preload = [runtime]
    cxx = subprocess.run([cc, "-print-file-name=libstdc++.so.6"], capture_output=True, text=True).stdout.strip()
    if os.path.isabs(cxx) and os.path.exists(cxx):
        preload.append(cxx)
    env = dict(os.environ, STFTBLUR_CFLAGS=" ".join(SANITIZE), STFTBLUR_CACHE=str(cache),
               LD_PRELOAD=" ".join(preload), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2",
               # CPython leaks by design; a failed malloc must return NULL (the MemoryError case).
               ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    env.pop("STFTBLUR_COMPILED", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)


@needs_cc
def test_kernel_cases_under_sanitizers(sanitizer_cache):
    """The cases above with the kernels built -fsanitize=address,undefined, in a subprocess
    with the ASan runtime preloaded; any report fails (ASan and UBSan abort the process)."""
    proc = _sanitized_run(sanitizer_cache, "import sys; from tests.test_native import run_cases\n"
                                    "f = run_cases(sanitized=True); print('\\n'.join(f)); sys.exit(1 if f else 0)")
    report = proc.stdout[-4000:] + proc.stderr[-8000:]
    assert proc.returncode == 0, report
    # The impossible scratch of the MemoryError cases is expected to be refused (and said so).
    stderr = re.sub(r"==\d+==WARNING: AddressSanitizer failed to allocate 0x[0-9a-f]+ bytes\n", "", proc.stderr)
    assert "Sanitizer" not in stderr and "runtime error" not in stderr, report


@needs_cc
def test_sanitizers_would_catch_an_overflow(sanitizer_cache):
    """The harness itself: the overlap-add entry called past the Python checks with an image
    one column too narrow writes out of bounds, and ASan stops the process."""
    code = ("import torch; from stftblur.losses import _compiled; lib = _compiled._library();\n"
            "p = torch.rand(1, 2, 2, 4, 4); out = torch.empty(1, 6, 5)\n"
            "lib.lpl_overlap_add(p.data_ptr(), None, out.data_ptr(), 0, 6, 6, 6, 2, 2, 4, 4, 2, *p.stride())\n"
            "print('not caught')")
    proc = _sanitized_run(sanitizer_cache, code)
    assert proc.returncode != 0 and "AddressSanitizer" in proc.stderr and "not caught" not in proc.stdout


# ---------------------------------------------------------------------------------------------
# Each Python entry checks what it is given before any pointer reaches C.


class _Trap:
    """A stand-in library: any C entry reached fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the C entry {name} was reached")


@pytest.fixture
def trap(monkeypatch):
    t = _Trap()
    monkeypatch.setattr(_compiled, "_library", lambda: t)
    monkeypatch.setattr(_lpc_native.LIBRARY, "library", lambda: t)
    return t


def _terms_args(**change):
    fo = torch.zeros(2, 3, 2, 4, 3, dtype=torch.complex64)
    args = dict(fo=fo, ft=torch.zeros_like(fo), w_val=torch.ones(4, 3), w_amp=torch.ones(3), w_ph=torch.ones(1),
                phase_weight=1.0, amplitude_weight=1.0, phase_distance="wrapped", phase_offset=0.0, eps=1e-4,
                need_o=True, need_t=True)
    args.update(change)
    return args


_fo = torch.zeros(2, 3, 2, 4, 3, dtype=torch.complex64)
TERMS_BAD = [
    ("fo", {"fo": torch.zeros(2, 3, 2, 4, 3)}, TypeError, "fo must have one of the dtypes"),
    ("fo", {"fo": _fo.numpy()}, TypeError, "fo must be a torch.Tensor"),
    ("ft", {"ft": torch.zeros(2, 3, 2, 4, 3, dtype=torch.complex128)}, TypeError, "ft must have dtype"),
    ("ft", {"ft": torch.zeros(2, 3, 2, 4, 4, dtype=torch.complex64)}, ValueError, "ft must have the shape of fo"),
    ("ft", {"ft": torch.zeros(2, 3, 2, 4, 3, dtype=torch.complex64, device="meta")}, ValueError, "ft must be on"),
    ("fo", {"fo": torch.zeros(4, 3, dtype=torch.complex64), "ft": torch.zeros(4, 3, dtype=torch.complex64)},
     ValueError, "at least 3 dimensions"),
    ("w_val", {"w_val": torch.ones(4, 4)}, ValueError, "w_val must broadcast to the coefficient shape"),
    ("w_amp", {"w_amp": torch.ones(2, 4, 3)}, ValueError, "w_amp must broadcast"),
    ("w_ph", {"w_ph": torch.ones(3, dtype=torch.int64)}, TypeError, "w_ph must have one of the dtypes"),
    ("w_ph", {"w_ph": torch.ones(3, device="meta")}, ValueError, "w_ph must be on the device of fo"),
    ("phase_distance", {"phase_distance": "angular"}, ValueError, "phase_distance must be one of"),
    ("eps", {"eps": float("nan")}, ValueError, "eps must be finite"),
    ("phase_weight", {"phase_weight": "1"}, TypeError, "phase_weight must be a real number"),
    ("need_o", {"need_o": 1}, TypeError, "need_o must be a bool"),
]


@pytest.mark.parametrize("name,change,error,match", TERMS_BAD, ids=[f"{c[0]}-{i}" for i, c in enumerate(TERMS_BAD)])
def test_coefficient_terms_checks_its_arguments(trap, name, change, error, match):
    args = _terms_args(**change)
    with pytest.raises(error, match=match):
        _compiled.coefficient_terms(**args)


def test_coefficient_terms_returns_none_where_it_does_not_serve(trap):
    """complex128 and other devices are served by the reference path (documented), not refused."""
    fo = torch.zeros(2, 3, 2, 4, 3, dtype=torch.complex128)
    assert _compiled.coefficient_terms(**_terms_args(fo=fo, ft=torch.zeros_like(fo))) is None
    fo = torch.zeros(2, 3, 2, 4, 3, dtype=torch.complex64, device="meta")
    assert _compiled.coefficient_terms(**_terms_args(fo=fo, ft=torch.zeros_like(fo), w_val=torch.ones(4, 3, device="meta"),
                                                     w_amp=torch.ones(3, device="meta"),
                                                     w_ph=torch.ones(1, device="meta"))) is None


@needs_kernels
def test_coefficient_terms_of_aliased_spectra():
    """fo and ft that are one tensor are served (ft copied first), as the reference serves them."""
    gen = torch.Generator().manual_seed(0)
    fo = _spectra((2, 3, 2, 4, 3), gen)
    args = (torch.ones(4, 3), torch.ones(3), torch.ones(1), 1.0, 1.0, "wrapped", 0.0, 1e-4, True, True)
    values, go, gt = _compiled.coefficient_terms(fo, fo, *args)
    want = _reference_terms()(fo.clone(), fo.clone(), *args)
    torch.testing.assert_close(values, want[0], rtol=1e-5, atol=1e-6)
    for g, g_ref in ((go, want[1]), (gt, want[2])):
        assert g.data_ptr() != fo.data_ptr() or g is go
        torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-5 * g_ref.abs().max().item())


def _kernel_args(**change):
    fo = torch.zeros(2, 3, 4, dtype=torch.complex64)
    args = dict(lib=_Trap(), mode=0, fo=fo, ft=torch.zeros_like(fo), need_o=True, need_t=False,
                weights=(torch.ones(1, 12),) * 3, layout=(2, 1, 12, 12, 12), params=(1.0, 1.0, 0.0, 1e-8),
                sums=torch.empty(2, dtype=torch.float64))
    args.update(change)
    return args


KERNEL_BAD = [
    ({"fo": torch.zeros(2, 3, 4, dtype=torch.complex128)}, TypeError, "fo must have dtype"),
    ({"ft": torch.zeros(2, 4, 3, dtype=torch.complex64).transpose(1, 2)}, ValueError, "same shape and strides"),
    ({"fo": torch.zeros(2, 3, 4, dtype=torch.complex64).conj()}, ValueError, "lazily conjugated"),
    ({"mode": 3}, ValueError, "mode must be one of"),
    ({"layout": (3, 1, 12, 12, 12)}, ValueError, "sums must have shape"),
    ({"layout": (2, 1, 12, 13, 12), "weights": (torch.ones(1, 12),) * 3}, ValueError, "addresses beyond"),
    ({"layout": (2, 2, 6, 12, 4)}, ValueError, "w_val must have shape"),
    ({"layout": (2, 2, 6, 12, 4), "weights": (torch.ones(2, 6),) * 3}, ValueError, "overlap"),
    ({"layout": (2, 1, -12, 12, 12)}, ValueError, "non-negative"),
    ({"weights": (torch.ones(1, 12, dtype=torch.float64),) * 3}, TypeError, "w_val must have dtype"),
    ({"weights": (torch.ones(1, 24)[:, ::2],) * 3}, ValueError, "w_val must be contiguous"),
    ({"sums": torch.empty(2)}, TypeError, "sums must have dtype"),
    ({"ft": "fo"}, ValueError, "fo and ft must not overlap"),
]


@pytest.mark.parametrize("change,error,match", KERNEL_BAD)
def test_terms_kernel_checks_its_arguments(change, error, match):
    args = _kernel_args(**change)
    if isinstance(args["ft"], str):
        args["ft"] = args["fo"]
    with pytest.raises(error, match=match):
        _compiled._terms_kernel(**args)


OVERLAP_BAD = [
    ((torch.zeros(2, 2, 2, 4, 4, dtype=torch.int32), None, 6, 6, 2), TypeError, "patches must have one of the dtypes"),
    ((torch.zeros(2, 2, 4, 4), None, 6, 6, 2), ValueError, "patches must have 5 dimensions"),
    ((torch.zeros(2, 2, 2, 4, 4), None, 6, 5, 2), ValueError, "do not fit in 6x5 images"),
    ((torch.zeros(2, 2, 2, 4, 4), None, 6, 6, 0), ValueError, "stride must be >= 1"),
    ((torch.zeros(2, 2, 2, 4, 4), None, 6.0, 6, 2), TypeError, "height must be an int"),
    ((torch.zeros(2, 2, 2, 4, 4), torch.ones(4, 3), 6, 6, 2), ValueError, "window must have shape"),
    ((torch.zeros(2, 2, 2, 4, 4), torch.ones(3, 4), 6, 6, 2), ValueError, "window must have shape"),
    ((torch.zeros(2, 2, 2, 4, 4), torch.ones(16), 6, 6, 2), ValueError, "window must have 2 dimensions"),
    ((torch.zeros(2, 2, 2, 4, 4), torch.ones(4, 4, device="meta"), 6, 6, 2), ValueError, "window must be on"),
]


@pytest.mark.parametrize("args,error,match", OVERLAP_BAD)
def test_overlap_add_checks_its_arguments(trap, args, error, match):
    with pytest.raises(error, match=match):
        _compiled.overlap_add(*args)


def test_overlap_add_kernel_checks_its_arguments():
    p = torch.zeros(2, 2, 2, 4, 4)
    good = dict(lib=_Trap(), patches=p, win=None, out=torch.empty(2, 6, 6), stride=2)
    bad = [
        (dict(out=torch.empty(2, 6, 5)), ValueError, "do not fit"),
        (dict(out=torch.empty(3, 6, 6)), ValueError, "out must hold 2 images"),
        (dict(out=torch.empty(2, 6, 8)[..., :6]), ValueError, "out must be contiguous"),
        (dict(out=torch.empty(2, 6, 6, dtype=torch.float64)), TypeError, "out must have dtype"),
        (dict(win=torch.ones(4, 4).t()[:, :4].contiguous().t()), ValueError, "window must be contiguous"),
        (dict(win=torch.ones(3, 4)), ValueError, "window must have shape"),
        (dict(patches=p.double()), TypeError, "patches must have dtype"),
        (dict(out=p.view(-1)[:72].view(2, 6, 6)), ValueError, "must not overlap"),
    ]
    for change, error, match in bad:
        with pytest.raises(error, match=match):
            _compiled._overlap_add_kernel(**{**good, **change})


def test_product_checks_its_arguments(trap):
    spec = torch.zeros(2, 5, 6, dtype=torch.complex64)
    gains = torch.zeros(3, 4, 5, 6)
    bad = [
        ((spec.real, gains, 0, 2), TypeError, "spectrum must have one of the dtypes"),
        ((spec, gains.double(), 0, 2), TypeError, "gains must have dtype torch.float32"),
        ((spec, torch.zeros(3, 4, 5, 5), 0, 2), ValueError, "gains must have shape"),
        ((spec, gains.transpose(-1, -2).contiguous().transpose(-1, -2), 0, 2), ValueError, "gains must be contiguous"),
        ((spec, gains, 3, 2), ValueError, "o_start \\+ n_orientations must be <= the 4"),
        ((spec, gains, -1, 2), ValueError, "o_start must be >= 0"),
        ((spec[0], gains, 0, 2), ValueError, "spectrum must have 3 dimensions"),
        ((spec.to("meta"), gains, 0, 2), ValueError, "spectrum must be on the CPU"),
        ((spec, gains, 0, 2.0), TypeError, "n_orientations must be an int"),
    ]
    for args, error, match in bad:
        with pytest.raises(error, match=match):
            _lpc_native.product(*args)


def test_accumulate_checks_its_arguments(trap):
    resp = torch.zeros(3, 2, 4, 7, 6, dtype=torch.complex64)
    w = torch.tensor([1, -3, 2])
    num, den = torch.zeros(2, 7, 6, dtype=torch.float64), torch.zeros(2, 7, 6, dtype=torch.float64)
    bad = [
        ((resp.real, 1, w, num, den), TypeError, "resp must have one of the dtypes"),
        ((resp[0], 1, w, num, den), ValueError, "resp must have 5 dimensions"),
        ((resp, 3, w, num, den), ValueError, "border must leave pixels inside 7x6"),
        ((resp, -1, w, num, den), ValueError, "border must be >= 0"),
        ((resp, 1, w[:2], num, den), ValueError, "weights must have shape \\(3,\\)"),
        ((resp, 1, w.int(), num, den), TypeError, "weights must have dtype torch.int64"),
        ((resp, 1, torch.tensor([1, -3, 5000]), num, den), ValueError, "at most 1024"),
        ((resp, 1, w, num.float(), den), TypeError, "num must have dtype torch.float64"),
        ((resp, 1, w, num[:1], den), ValueError, "num must have shape \\(2, 7, 6\\)"),
        ((resp, 1, w, num, den.transpose(1, 2).contiguous().transpose(1, 2)), ValueError, "den must be contiguous"),
        ((resp, 1, w, num, num), ValueError, "num and den must not overlap"),
        ((resp, 1, w, num, den.to("meta")), ValueError, "den must be on the CPU"),
    ]
    for args, error, match in bad:
        with pytest.raises(error, match=match):
            _lpc_native.accumulate(*args)
    with pytest.raises(ValueError, match="_scratch must be >= 6"):
        _lpc_native.accumulate(resp, 1, w, num, den, _scratch=5)


# ---------------------------------------------------------------------------------------------
# Allocation failures raise; nothing is skipped.


@needs_kernels
@pytest.mark.parametrize("openmp", [True, False])
def test_allocation_failure_raises_memory_error(openmp):
    lib = _lpc_native.LIBRARY.library()
    gen = torch.Generator().manual_seed(0)
    resp = torch.complex(torch.randn(3, 2, 2, 9, 8, generator=gen), torch.randn(3, 2, 2, 9, 8, generator=gen))
    w = torch.tensor([1, -3, 2])
    num, den = torch.zeros(2, 9, 8, dtype=torch.float64), torch.zeros(2, 9, 8, dtype=torch.float64)
    with _lpc_path(lib, openmp):
        with pytest.raises(MemoryError, match="could not allocate"):
            _lpc_native.accumulate(resp, 1, w, num, den, _scratch=1 << 60)
        _lpc_native.accumulate(resp, 1, w, num, den, _scratch=9)  # more than a row is fine
    assert bool((den > 0).any())


# ---------------------------------------------------------------------------------------------
# No process-wide side effects; concurrent calls.


def test_library_calls_leave_the_thread_count_alone(monkeypatch):
    """The loss and the metrics never call torch.set_num_threads (small or large problems,
    compiled or reference path)."""
    from stftblur import LocalPhaseLoss, lpc_si

    def refuse(n):
        raise AssertionError(f"torch.set_num_threads({n}) called by a library call")

    monkeypatch.setattr(torch, "set_num_threads", refuse)
    gen = torch.Generator().manual_seed(0)
    for shape, preset in (((2, 1, 28, 28), "paper-code"), ((4, 1, 28, 28), "default"), ((2, 3, 96, 96), "default")):
        x = torch.rand(shape, generator=gen, requires_grad=True)
        LocalPhaseLoss.from_preset(preset)(x, torch.rand(shape, generator=gen)).backward()
    lpc_si(torch.rand(2, 1, 48, 40, generator=gen))
    lpc_si(torch.rand(1, 3, 32, 32, generator=gen, dtype=torch.float64))


def test_concurrent_calls_give_the_serial_values():
    """Two threads calling the loss (forward and backward) and lpc_si at once, on cold caches
    (configurations and sizes used nowhere else), get what one thread gets alone."""
    from stftblur import LocalPhaseLoss, lpc_si

    gen = torch.Generator().manual_seed(7)
    jobs = []
    for k, (shape, options) in enumerate((((3, 2, 37, 29), {"window_size": 10, "stride": 3}),
                                          ((2, 1, 45, 33), {"window_size": 12, "stride": 5, "window": "hann"}))):
        x, y = torch.rand(shape, generator=gen), torch.rand(shape, generator=gen)
        jobs.append(("loss", k, x, y, options))
        jobs.append(("lpc", k, torch.rand(2, 1, 43 + k, 51, generator=gen), None, {}))

    def run(job):
        kind, _, x, y, options = job
        if kind == "lpc":
            return lpc_si(x, return_map=True)
        xs = x.clone().requires_grad_()
        v = LocalPhaseLoss(reduction="none", **options)(xs, y)
        v.sum().backward()
        return v.detach(), xs.grad

    results = {}
    errors = []
    barrier = threading.Barrier(2)

    def worker(my_jobs):
        try:
            barrier.wait()
            for _ in range(3):
                for job in my_jobs:
                    results.setdefault((job[0], job[1]), []).append(run(job))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(jobs if i == 0 else jobs[::-1],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    for job in jobs:
        serial = run(job)
        got = results[(job[0], job[1])]
        assert len(got) == 6
        for out in got:
            for a, b in zip(out, serial):
                assert torch.equal(a, b), (job[0], job[1])
