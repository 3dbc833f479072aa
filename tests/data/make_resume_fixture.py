"""Write tests/data/resume_v0/: a tiny train-vae run stopped in the middle of epoch 2, and the
final weights and metrics of the same run trained without interruption.

Run once with the code that wrote the run directories of evals/runs/ (commit 6472e4a, before the
training loop was split into stftblur.training.run_dir and the trainer), so that
tests/test_vae_train.py can check that the current code resumes runs in that format exactly:

    STFTBLUR_DATA=/path/to/mnist PYTHONPATH=. OMP_NUM_THREADS=1 python tests/data/make_resume_fixture.py
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from stftblur.training import make_train_config, train_vae

HERE = Path(__file__).resolve().parent / "resume_v0"
TINY = dict(train_size=200, eval_size=100, epochs=2, log_every=3, n_export=0, n_samples=1,
            encoder_channels=(4, 8), decoder_channels=(8, 4))


def main() -> None:
    data = os.environ.get("STFTBLUR_DATA")
    if not data:
        sys.exit("set STFTBLUR_DATA to the MNIST directory")
    torch.set_num_threads(1)
    if HERE.exists():
        shutil.rmtree(HERE)
    HERE.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        stopped = Path(tmp) / "stopped"
        train_vae(make_train_config(max_steps=5, **TINY), stopped)
        (HERE / "stopped").mkdir()
        for name in ("config.json", "metrics.jsonl", "train_state.pt", "model.json", "model.safetensors"):
            shutil.copy(stopped / name, HERE / "stopped" / name)
        full = Path(tmp) / "full"
        train_vae(make_train_config(**TINY), full)
        (HERE / "full").mkdir()
        for name in ("metrics.jsonl", "model.safetensors", "summary.json"):
            shutil.copy(full / name, HERE / "full" / name)
    (HERE / "README.json").write_text(json.dumps({
        "written_by": "tests/data/make_resume_fixture.py at commit 6472e4a",
        "torch_version": torch.__version__, "torch_threads": 1, "options": {k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()},
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
