"""stftblur.integrations.torchmetrics: the functions' values, merge_state, and a real 2-process gloo sync."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

pytest.importorskip("torchmetrics", reason="needs the torchmetrics extra: pip install 'stftblur[torchmetrics]'")

from stftblur.errors import MissingExtraError  # noqa: E402
from stftblur.integrations.torchmetrics import LPCSI, SpectralDeficit  # noqa: E402
from stftblur.metrics import lpc_si, spectral_deficit  # noqa: E402

from .conftest import ROOT  # noqa: E402


def _data() -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Three batches of "generated" (blurred) images and two of real ones, 24x24 RGB."""
    g = torch.Generator().manual_seed(21)
    real = [torch.rand(n, 3, 24, 24, generator=g) for n in (4, 3)]
    fake = [
        torch.nn.functional.avg_pool2d(torch.rand(n, 3, 24, 24, generator=g), 3, 1, 1, count_include_pad=False)
        for n in (2, 3, 2)
    ]
    return fake, real


def _references(fake: List[torch.Tensor], real: List[torch.Tensor]) -> Tuple[float, float]:
    lpc = float(torch.cat([lpc_si(f) for f in fake]).double().mean())
    return lpc, spectral_deficit(fake, real).deficit_db


def test_flags() -> None:
    assert (LPCSI.higher_is_better, LPCSI.is_differentiable, LPCSI.full_state_update) == (True, False, False)
    assert (SpectralDeficit.higher_is_better, SpectralDeficit.is_differentiable, SpectralDeficit.full_state_update) == (
        False, False, False)


def test_values_equal_the_functions() -> None:
    fake, real = _data()
    lpc_ref, deficit_ref = _references(fake, real)
    lpc, deficit = LPCSI(), SpectralDeficit()
    for f in fake:
        lpc.update(f)
        deficit.update(f, real=False)
    for r in real:
        deficit.update(r, real=True)
    assert lpc.compute().item() == pytest.approx(lpc_ref, rel=1e-12)
    assert deficit.compute().item() == deficit_ref  # the same float64 sums, in the same order
    assert deficit_ref > 3  # the blurred set has less high-frequency power

    # the same settings as the functions: non-default ones give the functions' values too
    lpc2 = LPCSI(data_range=255.0, border=3, n_orientations=4)
    lpc2.update(fake[0] * 255)
    assert lpc2.compute().item() == pytest.approx(float(lpc_si(fake[0] * 255, 255.0, border=3, n_orientations=4).double().mean()), rel=1e-12)
    d2 = SpectralDeficit(band=(0.1, 0.3), window=None, n_bins=6)
    d2.update(fake[1], real=False)
    d2.update(real[0], real=True)
    assert d2.compute().item() == spectral_deficit(fake[1], real[0], band=(0.1, 0.3), window=None, n_bins=6).deficit_db


def test_merge_state_gives_the_single_process_value() -> None:
    fake, real = _data()
    lpc_ref, deficit_ref = _references(fake, real)
    parts = [(LPCSI(), SpectralDeficit()) for _ in range(3)]
    # uneven shares: the last part sees no real image
    shares = [(fake[:1], real[:1]), (fake[1:2], real[1:]), (fake[2:], [])]
    for (lpc, deficit), (f_share, r_share) in zip(parts, shares):
        for f in f_share:
            lpc.update(f)
            deficit.update(f, real=False)
        for r in r_share:
            deficit.update(r, real=True)
    lpc, deficit = parts[0]
    for other_lpc, other_deficit in parts[1:]:
        lpc.merge_state(other_lpc)
        deficit.merge_state(other_deficit)
    assert lpc.compute().item() == pytest.approx(lpc_ref, rel=1e-12)
    assert deficit.compute().item() == pytest.approx(deficit_ref, abs=1e-12)


def test_errors() -> None:
    with pytest.raises(RuntimeError, match="update"):
        with pytest.warns(UserWarning):  # torchmetrics' own warning comes first
            LPCSI().compute()
    fake, real = _data()
    deficit = SpectralDeficit()
    deficit.update(real[0], real=True)
    with pytest.raises(RuntimeError, match="no generated images"):
        deficit.compute()
    deficit.reset()
    deficit.update(fake[0], real=False)
    with pytest.raises(RuntimeError, match="no real images"):
        deficit.compute()
    with pytest.raises(ValueError, match=r"real images have size \(16, 16\) but the generated images"):
        deficit.update(torch.rand(2, 3, 16, 16), real=True)
    with pytest.raises(TypeError, match="real must be a bool"):
        deficit.update(real[0], real="yes")
    with pytest.raises(TypeError, match="floating-point"):
        deficit.update(torch.zeros(2, 3, 24, 24, dtype=torch.uint8), real=True)
    with pytest.raises(RuntimeError, match="no per-batch value"):
        deficit(fake[0], real=False)
    with pytest.raises(ValueError, match="band"):
        SpectralDeficit(band=(0.3, 0.2))
    with pytest.raises(ValueError, match="window"):
        SpectralDeficit(window="hamming")
    with pytest.raises(ValueError, match="scales"):
        LPCSI(scales=(1, -1, 2))
    with pytest.raises(ValueError, match="channels"):
        LPCSI().update(torch.rand(1, 2, 16, 16))


def test_plot() -> None:
    pytest.importorskip("matplotlib")
    fake, real = _data()
    lpc, deficit = LPCSI(), SpectralDeficit()
    values = []
    for f in fake:
        lpc.update(f)
        values.append(lpc.compute())
    deficit.update(fake[0], real=False)
    deficit.update(real[0], real=True)
    fig, ax = lpc.plot(values)  # the values over the batches
    assert len(ax.lines[0].get_ydata()) == len(fake)
    fig2, ax2 = deficit.plot()  # compute()'s value
    assert fig2 is not None and ax2 is not None


def test_without_torchmetrics_the_import_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "torchmetrics" or m.startswith("torchmetrics.")]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setitem(sys.modules, "torchmetrics", None)
    monkeypatch.delitem(sys.modules, "stftblur.integrations.torchmetrics")
    with pytest.raises(MissingExtraError, match=r"pip install 'stftblur\[torchmetrics\]'"):
        importlib.import_module("stftblur.integrations.torchmetrics")


# --------------------------------------------------------------------------- two processes, gloo

# Rank 0 sees the first two generated batches and every real one; rank 1 the last generated
# batch and no real image (its deficit state holds only the empty record, which the sync must
# carry).
_SHARES = {0: ([0, 1], [0, 1]), 1: ([2], [])}


def _worker(rank: int, world: int, store: str, out: str) -> None:
    """One process of the gloo run: update with its share, compute (which syncs), write the values.

    Leaves through os._exit after destroy_process_group: a gloo worker thread can otherwise abort
    the process at interpreter shutdown (torch 2.14; see docs/integrations.md).
    """
    status = 1
    try:
        import torch.distributed as dist

        torch.set_num_threads(1)
        from datetime import timedelta

        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                                timeout=timedelta(seconds=120))  # a lost peer fails the run instead of hanging
        fake, real = _data()
        lpc, deficit = LPCSI(), SpectralDeficit()
        f_idx, r_idx = _SHARES[rank]
        for i in f_idx:
            lpc.update(fake[i])
            deficit.update(fake[i], real=False)
        for i in r_idx:
            deficit.update(real[i], real=True)
        result: Dict[str, float] = {"lpc_si": lpc.compute().item(), "deficit_db": deficit.compute().item(),
                                    "backend": dist.get_backend(), "world": dist.get_world_size()}
        Path(out).write_text(json.dumps(result))
        dist.barrier()
        dist.destroy_process_group()
        status = 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def test_two_process_gloo_sync_equals_one_process(tmp_path: Path) -> None:
    world = 2
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c",
             f"from tests.test_framework_torchmetrics import _worker; "
             f"_worker({rank}, {world}, {str(tmp_path / 'store')!r}, {str(tmp_path / f'rank{rank}.json')!r})"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in range(world)
    ]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    fake, real = _data()
    lpc_ref, deficit_ref = _references(fake, real)
    for r in results:
        assert r["backend"] == "gloo" and r["world"] == world
        assert r["lpc_si"] == pytest.approx(lpc_ref, rel=1e-12)
        assert r["deficit_db"] == pytest.approx(deficit_ref, abs=1e-12)
    # the processes alone would give other values: the sync did something
    alone = SpectralDeficit()
    alone.update(fake[0], real=False)
    alone.update(real[0], real=True)
    assert abs(alone.compute().item() - deficit_ref) > 1e-3
