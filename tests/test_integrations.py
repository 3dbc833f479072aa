"""LocalPhaseLoss with autocast, torch.compile and DDP, and every example of docs/integrations.md.

Tolerances (stated in docs/integrations.md):
- autocast bfloat16 on the CPU, float32 inputs: identical to eager float32 (the loss turns
  autocast off and computes in float32);
- bfloat16 inputs: identical to float32 on the same (rounded) values, and within 0.5% relative
  of float32 on the unrounded values (bfloat16 keeps 8 significant bits: 0.4% rounding);
- torch.compile (backend "aot_eager"): loss within 1e-6 relative, gradients within 1e-6; the loss
  alone compiles to one graph (0 graph breaks, fullgraph=True);
- DDP, 2 CPU processes (torchrun, gloo): averaged gradients within 1e-6 of the single-process
  gradients of the full batch.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from stftblur import LocalPhaseLoss

from .conftest import ROOT, cuda

EXAMPLES = ROOT / "examples"
TINY = ["--steps", "2", "--size", "32"]


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pair(seed: int = 0, shape=(4, 1, 32, 32)):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=g)
    output = (target + 0.1 * torch.randn(shape, generator=g)).clamp(0, 1)
    return output, target


def test_plain_loop_example():
    values = _example("plain_loop").main(TINY + ["--batch", "2"])
    assert math.isfinite(values["first"]) and math.isfinite(values["last"])


def test_kornia_ssim_example_and_conventions():
    v = _example("kornia_ssim_local_phase").main(TINY + ["--batch", "2"])
    assert math.isfinite(v["last"])
    # kornia's SSIMLoss is (1 - SSIM) / 2; with the same padding the two agree.
    assert v["kornia_valid"] == pytest.approx(v["stftblur_valid"] / 2, abs=1e-6)
    assert v["kornia_same"] == pytest.approx(v["stftblur_same"] / 2, abs=1e-6)
    assert abs(v["kornia_same"] - v["kornia_valid"]) > 1e-4


def test_local_phase_under_cpu_autocast_bfloat16():
    loss = LocalPhaseLoss()
    output, target = _pair()
    x32 = output.clone().requires_grad_()
    eager = loss(x32, target)
    eager.backward()
    x = output.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = loss(x, target)
    amp.backward()
    assert amp.dtype == torch.float32 and torch.isfinite(amp)
    assert torch.equal(amp, eager) and torch.equal(x.grad, x32.grad)

    # bfloat16 tensors (what a model under autocast returns) are computed in float32.
    xb = output.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lb = loss(xb, target.bfloat16())
    lb.backward()
    assert torch.isfinite(lb) and xb.grad.dtype == torch.bfloat16 and torch.isfinite(xb.grad).all()
    assert torch.equal(lb, loss(output.bfloat16().float(), target.bfloat16().float()))
    assert lb.item() == pytest.approx(eager.item(), rel=5e-3)


def test_autocast_example_cpu_bfloat16():
    v = _example("autocast_local_phase").main(TINY + ["--batch", "2", "--device", "cpu"])
    assert math.isfinite(v["last"])
    assert v["local_phase_amp"] == pytest.approx(v["local_phase_fp32"], rel=2e-2)


@cuda
def test_autocast_example_cuda_float16():
    v = _example("autocast_local_phase").main(TINY + ["--batch", "2", "--device", "cuda"])
    assert math.isfinite(v["last"])
    assert v["local_phase_amp"] == pytest.approx(v["local_phase_fp32"], rel=2e-2)


def test_torch_compile_matches_eager():
    # aot_eager: dynamo + AOTAutograd without code generation. inductor also works (the example's
    # default) but its first CPU compile takes over a minute on a 2-core machine.
    v = _example("compile_local_phase").main(TINY + ["--batch", "2", "--backend", "aot_eager", "--compile-loss", "--device", "cpu"])
    assert math.isfinite(v["first"]) and math.isfinite(v["last"])
    assert v["loss_diff"] <= 1e-6 * abs(v["eager"])
    assert v["grad_diff"] <= 1e-6


def test_compiled_loss_is_one_graph():
    # The loss is one custom operator (torch.ops.stftblur.local_phase), opaque to Dynamo: no graph
    # break, and fullgraph=True compiles (tests/test_custom_ops.py checks the operators in detail).
    output, target = _pair(shape=(2, 1, 32, 32))
    output.requires_grad_(True)
    loss = LocalPhaseLoss()
    explanation = torch._dynamo.explain(loss)(output, target)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1, explanation.break_reasons
    torch._dynamo.reset()
    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    value = compiled(output, target)
    (grad,) = torch.autograd.grad(value, output)
    eager = loss(output, target)
    (eager_grad,) = torch.autograd.grad(eager, output)
    assert abs(value.item() - eager.item()) <= 1e-6 * abs(eager.item())
    assert (grad - eager_grad).abs().max().item() <= 1e-6


def test_ddp_two_cpu_processes_average_to_the_full_batch_gradient(tmp_path):
    out = tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(EXAMPLES / "ddp_local_phase.py"), "--check", "--out", str(out), "--device", "cpu",
        "--steps", "2", "--size", "32", "--global-batch", "4",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["world_size"] == 2 and result["backend"] == "gloo"
    assert result["max_abs_diff"] <= 1e-6 and result["max_abs_grad"] > 1e-3


@pytest.mark.parametrize("status, code, stderr", [(None, 0, ""), (0, 0, ""), (1, 1, ""), ("bad option", 1, "bad option")])
def test_ddp_example_exits_with_the_status_systemexit_would_give(status, code, stderr):
    # The DDP example leaves through os._exit (docs/integrations.md says why): the exit status
    # and a message must still be what `raise SystemExit(status)` gives.
    script = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("ddp", {str(EXAMPLES / "ddp_local_phase.py")!r})
        ddp = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ddp)
        print("written before leaving", end="")
        ddp._exit_without_finalizing({status!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == code
    assert proc.stdout == "written before leaving"  # flushed, not lost
    assert proc.stderr.strip() == stderr


def test_every_example_takes_the_options_the_doc_names(capsys):
    # docs/integrations.md: each takes --steps, --size, --device, and --batch (DDP: --global-batch).
    for path in sorted(EXAMPLES.glob("[!_]*.py")):
        with pytest.raises(SystemExit) as e:
            _example(path.stem).main(["--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        batch = "--global-batch" if path.stem == "ddp_local_phase" else "--batch"
        for option in ("--steps", "--size", "--device", batch):
            assert re.search(rf"{option}\b(?!-)", text), f"{path.name} has no {option}"
    doc = (ROOT / "docs" / "integrations.md").read_text()
    assert "`--global-batch` for the DDP example" in doc


def test_integration_doc_snippets_are_taken_from_the_examples():
    doc = (ROOT / "docs" / "integrations.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert len(blocks) >= 5
    sources = {p.name: p.read_text() for p in EXAMPLES.glob("*.py")}
    for block in blocks:
        lines = [line for line in textwrap.dedent(block).splitlines() if line.strip() and not line.strip().startswith("#")]
        hosts = [name for name, src in sources.items() if all(line.strip() in src for line in lines)]
        assert hosts, f"this snippet of docs/integrations.md is not in examples/:\n{block}"
