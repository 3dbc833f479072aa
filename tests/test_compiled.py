"""The compiled CPU kernels of the local-phase loss against its pure-PyTorch reference path,
the fallback without a compiler, how the kernels split their work over threads, and the
refusal of second-order gradients. (The C sources, the sanitizers and the argument checks:
tests/test_native.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from stftblur import LocalPhaseLoss, local_phase_loss
from stftblur import _native
from stftblur.losses import _compiled

from .conftest import ROOT
from .test_losses import _reference_loss

needs_compiled = pytest.mark.skipif(not _compiled.available(), reason=f"no compiled kernels: {_compiled.status()}")

# Agreement of the two float32 paths, measured at <= 3.5e-7 (values, relative) and <= 3.5e-7
# (gradients, relative to the largest gradient entry): the kernels round every operation as the
# reference does, except atan2 (2e-7 relative) and the order of the sums.
VALUE_RTOL = 1e-6
GRAD_RTOL = 1e-6

CONFIGS = [
    ("default", {}),
    ("default", {"phase_distance": "raw"}),
    ("default", {"phase_distance": "cosine"}),
    ("default", {"frequency_weighting": "product", "aggregate": "sum"}),
    ("default", {"window": None, "stride": 3}),  # stride does not divide the window
    ("default", {"window_size": 7, "stride": 3, "window": "sqrt-hann", "amplitude_weight": 0.5}),
    ("default", {"window_size": 8, "frequency_weighting": "none", "normalized": False}),
    ("paper-text", {}),
    ("paper-code", {}),
    ("paper-code", {"window": "hann", "phase_offset": 0.0}),
]


def _both_paths(loss, x, y):
    """The loss module's values and gradients on the compiled kernels and on the reference path."""
    out = []
    for kernels in ("auto", "reference"):
        path = type(loss)(**{**loss.config, "kernels": kernels})
        xs = x.detach().clone().requires_grad_(x.requires_grad)
        ys = y.detach().clone().requires_grad_(y.requires_grad)
        v = path(xs, ys)
        v.sum().backward()
        out.append((v.detach(), xs.grad, ys.grad))
    return out


def _assert_close(fast, ref, grads=2):
    (v1, gx1, gy1), (v2, gx2, gy2) = fast, ref
    assert sum(g is not None for g in (gx1, gy1)) == grads
    torch.testing.assert_close(v1, v2, rtol=VALUE_RTOL, atol=VALUE_RTOL * v2.abs().max().item())
    for g1, g2 in ((gx1, gx2), (gy1, gy2)):
        assert (g1 is None) == (g2 is None)
        if g1 is not None:
            assert (g1 - g2).abs().max() <= GRAD_RTOL * g2.abs().max()


@needs_compiled
@pytest.mark.parametrize("preset,options", CONFIGS)
@pytest.mark.parametrize("shape", [(3, 2, 28, 28), (2, 1, 61, 47)])
def test_compiled_matches_reference_path(preset, options, shape):
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(shape, generator=gen), torch.rand(shape, generator=gen)
    loss = LocalPhaseLoss.from_preset(preset, reduction="none", **options)
    _assert_close(*_both_paths(loss, x.requires_grad_(), y.requires_grad_()))


@needs_compiled
@pytest.mark.parametrize("which", ["input", "target", "neither"])
def test_compiled_gradient_of_one_side_and_many_chunks(which):
    # 40 images of 96x96 are several cache-sized chunks.
    gen = torch.Generator().manual_seed(2)
    x, y = torch.rand(20, 2, 96, 96, generator=gen), torch.rand(20, 2, 96, 96, generator=gen)
    x.requires_grad_(which == "input")
    y.requires_grad_(which == "target")
    loss = LocalPhaseLoss(reduction="none")
    if which == "neither":
        with torch.no_grad():
            ref = LocalPhaseLoss(reduction="none", kernels="reference")(x, y)
            torch.testing.assert_close(loss(x, y), ref, rtol=VALUE_RTOL, atol=0)
        return
    _assert_close(*_both_paths(loss, x, y), grads=1)


@needs_compiled
def test_compiled_edge_values():
    # Exact zero coefficients (no phase; the tapered phase gradient), patches that are
    # identical in both images (phase difference exactly 0). Constant images are left out: their
    # coefficients away from the window's own spectrum are FFT rounding noise, whose phase (and so
    # the loss) is itself noise.
    gen = torch.Generator().manual_seed(5)
    r = torch.rand(1, 1, 32, 32, generator=gen)
    half = torch.cat([r[..., :16, :], torch.rand(1, 1, 16, 32, generator=gen)], dim=-2)
    ramp = torch.linspace(-1, 1, 32).expand(1, 1, 32, 32).contiguous()
    pairs = [(torch.zeros_like(r), r), (r, torch.zeros_like(r)), (r, half), (half, r)]
    for preset in ("default", "paper-code", "paper-text"):
        for distance in ("wrapped", "raw", "cosine"):
            loss = LocalPhaseLoss.from_preset(preset, phase_distance=distance, reduction="none")
            for a, b in pairs:
                _assert_close(*_both_paths(loss, a.requires_grad_(), b.requires_grad_()))
            # Opposite images: every phase differs by exactly pi, where the wrapped distance has
            # its maximum; Im(F_o conj(F_t)) = bc - ad is exactly 0 (both paths round the two
            # products separately, never through a fused multiply-add), so the subgradient is 0.
            if distance == "wrapped":
                for a in (r, ramp):
                    grads = _both_paths(loss, a.requires_grad_(), -a)
                    for v, gx, _ in grads:
                        assert float(v) > 0 and torch.count_nonzero(gx) == 0


@needs_compiled
@pytest.mark.parametrize("distance", ["wrapped", "raw", "cosine"])
def test_compiled_against_float64_definition(distance):
    """Independent reference: the straight-line float64 definition through stft2d."""
    gen = torch.Generator().manual_seed(3)
    x, y = torch.rand(2, 3, 40, 36, generator=gen, dtype=torch.float64), torch.rand(2, 3, 40, 36, generator=gen,
                                                                                        dtype=torch.float64)
    expected = _reference_loss(x, y, distance=distance).mean(0)
    got = local_phase_loss(x.float(), y.float(), phase_distance=distance, reduction="none").mean(0)
    torch.testing.assert_close(got.double(), expected, rtol=2e-5, atol=0)


def _kernel_spy(monkeypatch) -> list:
    """Record the thread count and a copy of what every call of the compiled kernel returns."""
    calls: list = []
    original = _compiled.coefficient_terms

    def spy(*args):
        out = original(*args)
        calls.append((torch.get_num_threads(), None if out is None else [None if t is None else t.clone() for t in out]))
        return out

    monkeypatch.setattr(_compiled, "coefficient_terms", spy)
    return calls


def _assert_same_up_to_the_inverse_fft(a: torch.Tensor, b: torch.Tensor) -> None:
    """Image gradients pass through PyTorch's inverse real FFT, whose float rounding depends on
    the thread count on some CPUs (MKL on an AVX-512 AMD EPYC: 1 ulp); they agree to that."""
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item())


@needs_compiled
def test_compiled_result_does_not_depend_on_thread_count(monkeypatch):
    """The kernels split their work by thread, but each coefficient's value and gradient is
    computed alone: their outputs, and the loss, are bit-identical at any thread count."""
    calls = _kernel_spy(monkeypatch)
    gen = torch.Generator().manual_seed(4)
    x, y = torch.rand(2, 3, 128, 128, generator=gen), torch.rand(2, 3, 128, 128, generator=gen)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            xs = x.clone().requires_grad_()
            v = local_phase_loss(xs, y, reduction="none")
            v.sum().backward()
            results.append((v.detach(), xs.grad))
    finally:
        torch.set_num_threads(threads)
    half = len(calls) // 2
    assert half and [c[0] for c in calls] == [1] * half + [3] * half
    for (_, one), (_, three) in zip(calls[:half], calls[half:]):
        assert one is not None and three is not None
        for a, b in zip(one, three):
            assert (a is None and b is None) or torch.equal(a, b)
    assert torch.equal(results[0][0], results[1][0])
    _assert_same_up_to_the_inverse_fft(results[0][1], results[1][1])


def test_fallback_without_compiler(monkeypatch, tmp_path):
    """No C compiler: the loss runs on the reference path, silently, and says why in status()."""
    monkeypatch.setattr(_compiled.LIBRARY, "_tried", False)
    monkeypatch.setattr(_compiled.LIBRARY, "_lib", None)
    monkeypatch.setattr(_native, "_compiler", lambda: None)
    monkeypatch.setenv("STFTBLUR_CACHE", str(tmp_path))
    assert not _compiled.available()
    assert "no C compiler" in _compiled.status()
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    local_phase_loss(x, torch.rand(2, 1, 28, 28)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert not list(tmp_path.iterdir())


def test_disabled_by_environment():
    code = ("import torch; from stftblur.losses import _compiled; from stftblur import local_phase_loss;"
            "print(_compiled.available(), _compiled.status());"
            "print(float(local_phase_loss(torch.ones(1, 1, 16, 16), torch.zeros(1, 1, 16, 16))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"STFTBLUR_COMPILED": "0", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                              "PATH": "/usr/bin:/bin"})
    first, value = out.stdout.strip().splitlines()
    assert first == "False disabled by STFTBLUR_COMPILED=0"
    expected = float(local_phase_loss(torch.ones(1, 1, 16, 16), torch.zeros(1, 1, 16, 16), kernels="reference"))
    assert expected > 0 and float(value) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kernels", ["auto", "reference"])
def test_second_order_gradients_raise(kernels):
    """The gradient is formed in the forward pass; differentiating it again cannot be right, so
    backward with create_graph=True refuses instead of returning a gradient without a graph."""
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    loss = local_phase_loss(x, torch.rand(2, 1, 28, 28), kernels=kernels)
    with pytest.raises(RuntimeError, match="second-order gradients"):
        torch.autograd.grad(loss, x, create_graph=True)
    # First-order use is unaffected.
    (g,) = torch.autograd.grad(local_phase_loss(x, torch.rand(2, 1, 28, 28), kernels=kernels), x)
    assert g.shape == x.shape


def test_kernels_is_a_setting_of_the_call():
    """Which kernels a loss uses is its own option: another loss in the same process (or another
    thread) keeps its own choice, and nothing process-wide exists to switch."""
    assert not hasattr(_compiled, "set_enabled") and not hasattr(_compiled, "get_enabled")
    reference = LocalPhaseLoss(kernels="reference")
    assert reference.kernels == "reference" and LocalPhaseLoss(**reference.config).kernels == "reference"
    assert "kernels" not in LocalPhaseLoss().config  # the default keeps the repr and config as they were
    with pytest.raises(ValueError, match="kernels must be one of"):
        LocalPhaseLoss(kernels="fast")
    with pytest.raises(ValueError, match="kernels must be one of"):
        local_phase_loss(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), kernels=None)


def test_kernel_threads_follow_the_size_of_the_work(monkeypatch):
    """The kernels decide how many of their own threads to use from the work size (at most
    torch.get_num_threads(), which they only read): a small problem runs on the calling thread."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert _native.thread_count(100, 10) == 1  # 1,000 items of work: one thread
    assert _native.thread_count(8, _native.PARALLEL_MIN_WORK) == 4  # capped by the intra-op count
    assert _native.thread_count(3, _native.PARALLEL_MIN_WORK) == 3  # one per item at most
    assert _native.thread_count(100, 3 * _native.PARALLEL_MIN_WORK // 100) == 2
    ranges: list = []
    _compiled._run_parallel(lambda i0, i1: ranges.append((i0, i1)), 100, 10)
    assert ranges == [(0, 100)]


def test_kernel_thread_pool_from_two_threads(monkeypatch):
    """Two threads splitting work over the shared pool at once both get every range done, and
    an error in a range is raised to its caller after the other ranges finished."""
    import threading

    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    seen: list = []
    lock = threading.Lock()

    def work(tag):
        def fn(i0, i1):
            with lock:
                seen.append((tag, i0, i1))
        _compiled._run_parallel(fn, 9, _compiled.PARALLEL_MIN_WORK)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(seen) == [(k, a, b) for k in range(2) for a, b in ((0, 3), (3, 6), (6, 9))]

    def fail(i0, i1):
        if i0:
            raise ValueError(f"range {i0}")

    with pytest.raises(ValueError, match="range"):
        _compiled._run_parallel(fail, 9, _compiled.PARALLEL_MIN_WORK)


def test_kernel_thread_pool_in_a_forked_child():
    """The pool of kernel threads made before a fork (multiprocessing, DataLoader workers) is
    not reused in the child, where its threads do not exist (submitting to it would hang)."""
    import multiprocessing as mp

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert sorted(_split_in_pool()) == [(0, 4), (4, 8)]  # the parent makes the pool
        with mp.get_context("fork").Pool(1) as pool:
            got = pool.apply_async(_split_in_pool).get(timeout=60)
        assert sorted(got) == [(0, 4), (4, 8)]
    finally:
        torch.set_num_threads(threads)


def _split_in_pool():
    torch.set_num_threads(2)
    ranges = []
    _compiled._run_parallel(lambda i0, i1: ranges.append((i0, i1)), 8, _compiled.PARALLEL_MIN_WORK)
    return ranges
