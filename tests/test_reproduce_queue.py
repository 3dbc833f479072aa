"""The reproduction queue (evals/reproduce.py): run states, what it starts, its locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "evals"))
import reproduce  # noqa: E402


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "RUNS", tmp_path)
    return tmp_path


def _begin(d, complete=False):
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"config": {"device": "cpu", "epochs": 10}}))
    if complete:
        (d / "summary.json").write_text("{}")


def test_states_and_what_is_pending(runs_dir):
    queue = reproduce.queue()
    names = [r["name"] for r in queue]
    assert names[:4] == ["full-ours-s0", "full-ssim-s0", "full-lpl-s0", "full-l2-s0"]
    order = ["short-ffl-s1", "full-ffl-s0", "full-dft+ssim-s0", "full-l1-s0", "short-ssim-s2", "short-ffl-s2",
             "full-l2-released-s0", "short-ours-released-s2", "abl-freqw1-s0",
             "abl-product-s2", "conf-ssim-s3", "conf-ssim-s5", "rep-ssim-s6", "rep-lambda9-s10",
             "abl-fwnone-s0", "abl-unnorm-s2", "dfc-ssim-s11", "dfc-lambda9-s15"]
    assert [names.index(n) for n in order] == sorted(names.index(n) for n in order)
    assert len(names) == len(set(names)) == 4 + 7 * 3 + 3 + 1 + 2 * 3 + 8 * 3 + 3 * (2 if reproduce.CONFIRM_VARIANT else 1) + 2 * 5 + 2 * 3 + 2 * 5
    _begin(runs_dir / "full-ours-s0", complete=True)
    _begin(runs_dir / "full-ssim-s0")
    assert [reproduce.state(n) for n in names[:3]] == ["complete", "partial", "todo"]
    pending = [r["name"] for r in reproduce.pending_runs(queue)]
    assert pending[:2] == ["full-ssim-s0", "full-lpl-s0"] and "full-ours-s0" not in pending
    # On another device only runs that have not begun start: a run never changes device.
    fresh = [r["name"] for r in reproduce.pending_runs(queue, skip_partial=True)]
    assert fresh[0] == "full-lpl-s0" and "full-ssim-s0" not in fresh


def test_a_partial_run_is_resumed_and_a_new_one_is_not(runs_dir):
    run = {"name": "short-l1-s1", "args": ["--loss", "l1", "--epochs", "10", "--seed", "1"]}
    assert "--resume" not in reproduce.command(run, threads=1)
    _begin(runs_dir / "short-l1-s1")
    cmd = reproduce.command(run, threads=1)
    assert cmd[-1] == "--resume" and cmd[cmd.index("--threads") + 1] == "1"
    assert cmd[cmd.index("--out") + 1] == str(runs_dir / "short-l1-s1")


def test_locks_keep_two_queues_apart_and_dead_ones_are_taken_over(runs_dir):
    assert reproduce._claim("short-l1-s1")  # this process holds it now
    assert reproduce._lock("short-l1-s1").read_text() == str(os.getpid())
    assert not reproduce._claim("short-l1-s1")  # a live holder: skipped
    reproduce._release("short-l1-s1")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    reproduce._lock("short-l1-s2").write_text(dead.stdout.strip())  # its process has exited
    assert reproduce._claim("short-l1-s2")


def test_progress_of_a_partial_run(runs_dir):
    _begin(runs_dir / "short-l1-s1")
    (runs_dir / "short-l1-s1" / "metrics.jsonl").write_text('{"event": "train", "epoch": 3, "step": 3500}\n')
    assert reproduce.progress("short-l1-s1") == "  (epoch 3 of 10)"
    assert reproduce.progress("short-l1-s2") == ""  # not begun


def test_fashion_queue_runs_the_primary_comparison_first_on_fashion_mnist_grayscale():
    runs = reproduce.fashion_queue()
    names = [r["name"] for r in runs]
    primary = [f"fm-{c}-s{s}" for s in reproduce.FASHION_SEEDS
               for c in (reproduce.FASHION_PRIMARY["baseline"], reproduce.FASHION_PRIMARY["config"])]
    assert names[:len(primary)] == primary
    assert len(names) == len(set(names)) == len(reproduce.FASHION_LOSSES) * len(reproduce.FASHION_SEEDS)
    for r in runs:
        args = r["args"]
        assert args[:3] == ["--dataset", "fashion-mnist", "--grayscale"] and args[args.index("--epochs") + 1] == "10"
        beta = args[args.index("--beta") + 1] if "--beta" in args else None
        assert (beta == "0.25") == ("-released" in r["name"])
    assert not set(names) & {r["name"] for r in reproduce.queue()}
