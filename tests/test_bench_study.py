"""evals/bench_loss.py --study: the loss-design study's variants, timed against LocalPhaseLoss()."""

import importlib.util
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    sys.path.insert(0, str(ROOT / "evals"))
    spec = importlib.util.spec_from_file_location("evals_bench_loss", ROOT / "evals" / "bench_loss.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_variants_apply_to_their_shapes_and_are_timed_together():
    bench = _bench()
    small, large = bench.study_losses(28), bench.study_losses(48)
    assert "mr-lpl" not in small and {"mr-lpl", "mr-prod"} <= set(large)
    assert list(small)[0] == "LocalPhaseLoss()" and list(small)[-1] == "LocalPhaseLoss() again" and {"lambda9", "w8s2", "unnorm", "fwnone", "prod"} <= set(small)
    x, y = torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28)
    for name, loss in small.items():
        assert math.isfinite(float(loss(x, y))), name
    ms = bench.time_all((2, 1, 28, 28), "cpu", rounds=1, warmup=0, losses=small)
    assert set(ms) == set(small) and all(t > 0 for t in ms.values())
