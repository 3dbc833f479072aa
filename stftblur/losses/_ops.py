"""The fused local-phase loss as a PyTorch custom operator, ``torch.ops.stftblur.local_phase``.

Convention:
    The operator returns ``(values, grad_input, grad_target)``: the per-image loss (B,) and the
    image gradients that the fused forward pass (:func:`stftblur.losses._fused.fused_forward`)
    computes while the spectra are at hand (an empty tensor for a side whose gradient is not
    asked for). Its autograd formula scales the saved gradients by the incoming gradient of
    each value; the two gradient outputs are not differentiable, and neither is the backward
    pass: ``create_graph=True`` raises. A fake (meta) implementation gives the output shapes,
    so ``torch.compile`` treats the loss as one opaque call (no graph break, no tracing of the
    FFTs, the complex arithmetic or the caches) and runs the same code as eager: the compiled C
    kernels on the CPU (float32, where built), the pure-PyTorch path elsewhere (CUDA: one
    operator around it). The scalar options are operator arguments; the constants (window,
    frequency weights) are built inside, or passed as tensors where the user gave tensors.

    Eager calls (not traced by ``torch.compile``) enter the same forward and backward through a
    ``torch.autograd.Function``, which saves what the operator route costs per call (0.2 to
    0.3 ms, about 10% of the step at 50x1x28x28, docs/benchmarks.md; the dispatcher alone is
    about 14 us).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch

from stftblur._checks import check_finite
from stftblur.losses._fused import fused_forward, scale_gradients

__all__: List[str] = []

SECOND_ORDER_MESSAGE = (
    "local_phase_loss does not support second-order gradients (backward with create_graph=True, "
    "as in gradient penalties or Hessian-vector products): its gradient is computed analytically "
    "in the forward pass and is not itself differentiable. Compute the gradient of this loss "
    "without create_graph=True, or use a differentiable formulation (for example "
    "stftblur.stft2d with torch.angle and torch.abs) for that term."
)

# Index of the two need_*_grad flags among the operator's arguments, and the argument count.
_NEED_INPUT, _NEED_TARGET, _N_ARGS = 16, 17, 19


@torch.library.custom_op("stftblur::local_phase", mutates_args=())
def local_phase_op(
    input: torch.Tensor,
    target: torch.Tensor,
    window: Optional[torch.Tensor],
    weighting: Optional[torch.Tensor],
    window_name: str,
    weighting_name: str,
    window_size: List[int],
    stride: int,
    transform: str,
    normalized: bool,
    aggregate: str,
    phase_weight: float,
    amplitude_weight: float,
    phase_distance: str,
    phase_offset: float,
    eps: float,
    need_input_grad: bool,
    need_target_grad: bool,
    kernels: str,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values (B,) and image gradients (B, C, H, W), or (0,) where not asked for."""
    # The eager entry checks before (check_pair); a compiled graph reaches this check only here.
    check_finite(input, "input")
    check_finite(target, "target")
    values, grad_o, grad_t = fused_forward(
        input, target, window, weighting, window_name, weighting_name, (window_size[0], window_size[1]), stride,
        transform, normalized, aggregate, phase_weight, amplitude_weight, phase_distance, phase_offset, eps,
        need_input_grad, need_target_grad, kernels,
    )
    empty = input.new_empty(0)
    return values, empty if grad_o is None else grad_o, empty.clone() if grad_t is None else grad_t


@local_phase_op.register_fake
def _local_phase_fake(input: torch.Tensor, target: torch.Tensor, *args: Any) -> Tuple[torch.Tensor, ...]:
    need_o, need_t = args[_NEED_INPUT - 2], args[_NEED_TARGET - 2]
    b = input.shape[0]
    return (
        input.new_empty(b),
        torch.empty_like(input, memory_format=torch.contiguous_format) if need_o else input.new_empty(0),
        torch.empty_like(target, memory_format=torch.contiguous_format) if need_t else input.new_empty(0),
    )


def _setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Tuple[torch.Tensor, ...]) -> None:
    _, grad_o, grad_t = output
    ctx.mark_non_differentiable(grad_o, grad_t)
    ctx.set_materialize_grads(False)  # no zero tensors for the gradient outputs' (unused) gradients
    ctx.need = (inputs[_NEED_INPUT], inputs[_NEED_TARGET])
    ctx.save_for_backward(grad_o, grad_t)


def _backward(ctx: Any, grad_values: torch.Tensor, *_: Any) -> Tuple[Optional[torch.Tensor], ...]:
    if torch.is_grad_enabled():
        raise RuntimeError(SECOND_ORDER_MESSAGE)
    grad_o, grad_t = ctx.saved_tensors
    need_o, need_t = ctx.need
    gi, gt = scale_gradients(grad_values, grad_o if need_o else None, grad_t if need_t else None)
    return (gi, gt) + (None,) * (_N_ARGS - 2)


local_phase_op.register_autograd(_backward, setup_context=_setup_context)


class _LocalPhaseFunction(torch.autograd.Function):
    """The operator's forward and backward for eager calls (see the module's docstring)."""

    @staticmethod
    def forward(ctx: Any, input: torch.Tensor, target: torch.Tensor, *options: Any) -> torch.Tensor:  # type: ignore[override]
        values, grad_o, grad_t = fused_forward(input, target, *options)
        ctx.save_for_backward(grad_o, grad_t)
        return values

    @staticmethod
    def backward(ctx: Any, grad_values: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:  # type: ignore[override]
        if torch.is_grad_enabled():
            raise RuntimeError(SECOND_ORDER_MESSAGE)
        grad_o, grad_t = ctx.saved_tensors
        return scale_gradients(grad_values, grad_o, grad_t) + (None,) * (_N_ARGS - 2)


def local_phase_values(
    input: torch.Tensor,
    target: torch.Tensor,
    window: Optional[torch.Tensor],
    weighting: Optional[torch.Tensor],
    window_name: str,
    weighting_name: str,
    window_size: Tuple[int, int],
    stride: int,
    transform: str,
    normalized: bool,
    aggregate: str,
    phase_weight: float,
    amplitude_weight: float,
    phase_distance: str,
    phase_offset: float,
    eps: float,
    kernels: str,
) -> torch.Tensor:
    """The per-image loss (B,), differentiable once: the operator under ``torch.compile``, the
    same forward and backward through an autograd Function in eager mode."""
    grad = torch.is_grad_enabled()
    need_o, need_t = grad and input.requires_grad, grad and target.requires_grad
    options = (window_name, weighting_name, list(window_size), stride, transform, normalized, aggregate,
               phase_weight, amplitude_weight, phase_distance, phase_offset, eps)
    if torch.compiler.is_compiling():
        return local_phase_op(input, target, window, weighting, *options, need_o, need_t, kernels)[0]
    return _LocalPhaseFunction.apply(input, target, window, weighting, *options, need_o, need_t, kernels)
