"""The custom operators (torch.ops.stftblur.*): torch.library.opcheck on each, torch.compile with
fullgraph=True and no graph break, compiled values equal to eager ones, and concurrent calls.

Most compiled checks use the "aot_eager" backend: it runs dynamo, the fake implementations and
AOTAutograd's forward/backward split (everything the operators register), without the C++
code generation of inductor, which takes seconds per graph; one test compiles with inductor.
"""

from __future__ import annotations

import threading

import pytest
import torch

from stftblur import FourierLoss, LocalPhaseLoss, fourier_loss, local_phase_loss
from stftblur.losses._ops import local_phase_op
from stftblur.metrics import LPCSI, RadialSpectrum, lpc_si, radial_power_spectrum, spectral_deficit
from stftblur.metrics._lpc_map import lpc_si_op
from stftblur.metrics._spectral_ops import power_sum_op, radial_power_op

from .conftest import cuda


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _op_args(shape=(2, 1, 12, 12), need=(True, True), **over):
    gen = torch.Generator().manual_seed(7)
    dtype = over.pop("dtype", torch.float32)
    x = torch.rand(shape, generator=gen, dtype=dtype).requires_grad_(need[0])
    y = torch.rand(shape, generator=gen, dtype=dtype).requires_grad_(need[1])
    options = dict(window=None, weighting=None, window_name="hann", weighting_name="linear", window_size=[8, 8],
                   stride=4, transform="2d", normalized=True, aggregate="mean", phase_weight=3.0,
                   amplitude_weight=1.0, phase_distance="wrapped", phase_offset=0.0, eps=1e-4)
    options.update(over)
    kernels = options.pop("kernels", "auto")
    return (x, y, *options.values(), need[0], need[1], kernels)


OP_CASES = {
    "default": {},
    "input-grad-only": {"need": (True, False)},
    "no-grad": {"need": (False, False)},
    "raw-offset-rows": {"transform": "rows", "window_name": "none", "weighting_name": "product",
                        "phase_distance": "raw", "phase_offset": 1e-6, "aggregate": "sum", "normalized": False},
    "cosine-stride3": {"phase_distance": "cosine", "stride": 3, "window_name": "sqrt-hann"},
    "tensor-options": {"window": torch.rand(8, 8, generator=torch.Generator().manual_seed(1)), "window_name": "tensor",
                       "weighting": torch.rand(8, 5, generator=torch.Generator().manual_seed(2)),
                       "weighting_name": "tensor"},
    "float64-reference": {"dtype": torch.float64, "kernels": "reference"},
}


@pytest.mark.parametrize("case", OP_CASES)
def test_opcheck_local_phase(case):
    over = dict(OP_CASES[case])
    need = over.pop("need", (True, True))
    torch.library.opcheck(local_phase_op, _op_args(need=need, **over))


def test_opcheck_metric_ops():
    x = torch.rand(2, 3, 20, 18, generator=torch.Generator().manual_seed(3))
    torch.library.opcheck(lpc_si_op, (x, 1.0, [1.0, 1.5, 2.0], [1.0, -3.0, 2.0], 2.0, 1e-4, 8, 1))
    torch.library.opcheck(lpc_si_op, (x.double(), 255.0, [1.0, 2.0], [0.5, 0.5], 2.0, 1e-4, 4, 0))
    for window in ("hann", "none"):
        torch.library.opcheck(power_sum_op, (x, window))
    total = torch.rand(20, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    torch.library.opcheck(radial_power_op, (total, 18, 9, 5))
    torch.library.opcheck(radial_power_op, (total, 19, 12, 5))  # odd width; more bins than the default


LOSSES = {
    "default": lambda: LocalPhaseLoss(),
    "function-with-options": lambda: (lambda a, b: local_phase_loss(a, b, window_size=8, phase_distance="raw")),
    "fourier-function": lambda: (lambda a, b: fourier_loss(a, b, reduction="none")),
    "paper-code": lambda: LocalPhaseLoss.from_preset("paper-code", reduction="sum"),
    "paper-text-cosine": lambda: LocalPhaseLoss.from_preset("paper-text", phase_distance="cosine", reduction="none"),
    "fourier": lambda: FourierLoss(),
    "reference-kernels": lambda: LocalPhaseLoss(window_size=8, kernels="reference"),
    "tensor-window": lambda: LocalPhaseLoss(window_size=8, window=torch.hann_window(8, dtype=torch.float64)),
}


def _value_and_grads(loss, x, y):
    x = x.detach().clone().requires_grad_()
    y = y.detach().clone().requires_grad_()
    v = loss(x, y)
    gx, gy = torch.autograd.grad(v.sum(), (x, y))
    return v.detach(), gx, gy


@pytest.mark.parametrize("name", LOSSES)
def test_compiled_loss_equals_eager(name):
    loss = LOSSES[name]()
    gen = torch.Generator().manual_seed(5)
    x, y = torch.rand(3, 2, 32, 32, generator=gen), torch.rand(3, 2, 32, 32, generator=gen)
    explained = torch._dynamo.explain(loss)(x, y)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    for got, expected in zip(_value_and_grads(compiled, x, y), _value_and_grads(loss, x, y)):
        assert torch.equal(got, expected)


def test_compiled_loss_with_inductor_and_a_second_shape():
    """Inductor's generated code around the operator (casts, the batch mean, the gradient scaling)
    and a recompilation for a new batch size keep the eager values (to the rounding of a mean)."""
    loss = LocalPhaseLoss()
    compiled = torch.compile(loss, fullgraph=True)
    gen = torch.Generator().manual_seed(6)
    for shape in ((4, 1, 28, 28), (6, 1, 28, 28)):
        x, y = torch.rand(shape, generator=gen), torch.rand(shape, generator=gen)
        for got, expected in zip(_value_and_grads(compiled, x, y), _value_and_grads(loss, x, y)):
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)


def test_compiled_loss_under_autocast_and_without_grad():
    loss = LocalPhaseLoss(window_size=8)
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    x, y = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(compiled(x.bfloat16(), y.bfloat16()), loss(x.bfloat16(), y.bfloat16()))
    with torch.no_grad():
        assert torch.equal(compiled(x, y), loss(x, y))


def test_identical_images_are_exactly_zero_when_compiled():
    """The data-dependent early-out (identical images give exactly 0 and a zero gradient) lives
    inside the operator, so it holds under torch.compile too."""
    x = torch.rand(2, 1, 20, 20)
    compiled = torch.compile(LocalPhaseLoss(window_size=8), fullgraph=True, backend="aot_eager")
    v, gx, gy = _value_and_grads(compiled, x, x)
    assert v.item() == 0.0 and not gx.any() and not gy.any()


@pytest.mark.parametrize("bad", ["input", "target"])
def test_non_finite_images_raise_when_compiled(bad):
    """The eager loss and metrics refuse NaN/Inf before any work; under torch.compile that
    data-dependent check cannot sit in the graph, so each operator makes it when it runs: the
    compiled call raises the same error instead of returning NaN or a number."""
    x, y = torch.rand(2, 1, 20, 20), torch.rand(2, 1, 20, 20)
    (x if bad == "input" else y)[1, 0, 3, 4] = float("nan")
    for fn in (LocalPhaseLoss(window_size=8), lambda a, b: local_phase_loss(a, b, window_size=8, reduction="none")):
        with pytest.raises(ValueError, match=f"{bad} contains NaN or Inf values"):
            fn(x, y)
        with pytest.raises(ValueError, match=f"{bad} contains NaN or Inf values"):
            torch.compile(fn, fullgraph=True, backend="aot_eager")(x, y)
    images = torch.rand(2, 1, 32, 32)
    images[0, 0, 5, 5] = float("inf")
    spectrum = RadialSpectrum()
    for fn in (lambda a: lpc_si(a), lambda a: radial_power_spectrum(a).power, spectrum.update):
        with pytest.raises(ValueError, match="images contains NaN or Inf values"):
            fn(images)
        with pytest.raises(ValueError, match="images contains NaN or Inf values"):
            torch.compile(fn, fullgraph=True, backend="aot_eager")(images)
    assert spectrum.count == 0  # nothing was accumulated from the refused batch


def test_second_order_gradients_raise_when_compiled():
    """A gradient penalty through the compiled loss is refused too, by PyTorch: AOTAutograd runs
    the compiled backward without recording it and raises when its result is differentiated."""
    x = torch.rand(2, 1, 16, 16, requires_grad=True)
    compiled = torch.compile(lambda a, b: local_phase_loss(a, b, window_size=8), fullgraph=True, backend="aot_eager")
    (g,) = torch.autograd.grad(compiled(x, torch.rand(2, 1, 16, 16)), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        g.square().sum().backward()


def test_compiled_evaluation_step_with_metrics():
    """lpc_si, radial_power_spectrum and RadialSpectrum.update compile with fullgraph=True and
    give the eager values; spectral_deficit, whose result holds Python floats, is computed from
    the accumulated spectra after the step."""
    gen = torch.Generator().manual_seed(8)
    x, ref = torch.rand(3, 1, 32, 32, generator=gen), torch.rand(4, 1, 32, 32, generator=gen)
    for fn in (lambda a: lpc_si(a), lambda a: lpc_si(a, return_map=True)[1],
               lambda a: radial_power_spectrum(a, window=None).power):
        assert torch._dynamo.explain(fn)(x).graph_break_count == 0
        assert torch.equal(torch.compile(fn, fullgraph=True, backend="aot_eager")(x), fn(x))

    samples, metric = RadialSpectrum(), LPCSI()

    @torch.compile(fullgraph=True, backend="aot_eager")
    def step(images):
        samples.update(images)
        return metric.update(images)

    for batch in (x, x.flip(-1)):
        step(batch)
    eager = RadialSpectrum()
    for batch in (x, x.flip(-1)):
        eager.update(batch)
    assert samples.count == eager.count == 6
    assert torch.equal(samples.compute().power, eager.compute().power)
    assert torch.equal(metric.values, torch.cat([lpc_si(x), lpc_si(x.flip(-1))]).double())
    assert spectral_deficit(samples, ref).deficit_db == spectral_deficit(eager, ref).deficit_db


def test_concurrent_calls_give_the_serial_values():
    """Two threads calling the loss and LPC-SI at once (shared constant and filter-bank caches,
    shared kernel thread pool) get exactly what one thread gets."""
    gen = torch.Generator().manual_seed(9)
    inputs = [(torch.rand(4, 1, 36, 36, generator=gen), torch.rand(4, 1, 36, 36, generator=gen)) for _ in range(2)]
    losses = [LocalPhaseLoss(window_size=12, stride=3), LocalPhaseLoss.from_preset("paper-code")]

    def work(k):
        x, y = inputs[k]
        out = []
        for _ in range(3):
            out.append((_value_and_grads(losses[k], x, y), lpc_si(x)))
        return out

    serial = [work(k) for k in range(2)]
    results = [None, None]

    def run(k):
        results[k] = work(k)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for k in range(2):
        for (grads, si), (grads_s, si_s) in zip(results[k], serial[k]):
            assert torch.equal(si, si_s)
            for a, b in zip(grads, grads_s):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item())


@cuda
def test_compiled_loss_on_cuda_equals_eager():
    loss = LocalPhaseLoss()
    x, y = torch.rand(2, 3, 64, 64, device="cuda"), torch.rand(2, 3, 64, 64, device="cuda")
    compiled = torch.compile(loss, fullgraph=True)
    for got, expected in zip(_value_and_grads(compiled, x, y), _value_and_grads(loss, x, y)):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    torch.library.opcheck(local_phase_op, tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in _op_args()))
