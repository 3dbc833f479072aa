"""Ship the finished full-protocol reproduction runs as models/<name>/ with a model card.

    python evals/ship_models.py [--runs full-ours-s0,full-ssim-s0] [--n-samples 10000]
    python evals/ship_models.py --fashion      # the Fashion-MNIST study's fashion-ssim and fashion-lpl

For every finished (summary.json) run ``evals/runs/full-<loss>-s0`` (or those named): copies its
``model.safetensors`` (config in the file's metadata) to ``models/<loss>/`` (``+`` written
``-``), measures it on the MNIST test set exactly as ``evals/table1.py`` does (PSNR/SSIM with
sampled z on the raw output and with mean z on the clamped output; LPC-SI of prior samples and
of reconstructions), and on the first 500 test images (the numbers ``tests/test_shipped_models.py``
re-measures), draws a labelled figure of test inputs, reconstructions and prior samples, and
writes ``card.json`` and the model card ``README.md``. ``stftblur sample --checkpoint <loss>``
and ``stftblur eval-vae --checkpoint <loss>`` then find the model by name.

``--fashion`` ships seed 0 of the Fashion-MNIST study's SSIM alone and SSIM + LocalPhaseLoss() at
the setting whose prior samples are meaningful (FASHION_SHIPPED; docs/fashion.md) as
``models/fashion-ssim`` and ``models/fashion-lpl``, measured on the Fashion-MNIST test set
(grayscale) as ``evals/fashion_vae.py`` measures every run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "evals"))

from _machine import describe  # noqa: E402
from reproduce import FASHION_DATA, FASHION_LOSSES, LOSSES, RUNS  # noqa: E402
from table1 import LOSS_LABEL, measure, parse_name, rate  # noqa: E402

from stftblur.data import load_dataset  # noqa: E402
from stftblur.models import load_vae  # noqa: E402
from stftblur.training.evaluation import evaluate_reconstructions, sample_prior  # noqa: E402

MODELS = ROOT / "models"
SUBSET = 500
#: Shipped name -> the Fashion-MNIST run it comes from (beta 0.25: where the SSIM family draws
#: meaningful samples; docs/fashion.md).
FASHION_SHIPPED = {"fashion-ssim": "fm-ssim-released-s0", "fashion-lpl": "fm-lpl-released-s0"}
DATASETS = {
    "mnist": {"title": "MNIST", "binarize": True, "inputs": "test inputs (binarized)",
              "train": "MNIST (`mnist`), 60,000 training images binarized at 0.5",
              "test": "the whole MNIST test set (10,000 images, binarized), as `evals/table1.py` measures every row",
              "reference": "the 10,000 binarized test digits", "doc": "reproduction.md", "items": "digits"},
    "fashion-mnist": {"title": "Fashion-MNIST", "binarize": False, "inputs": "test inputs (grayscale)",
                      "train": "Fashion-MNIST (`fashion-mnist`, Debian's dataset-fashion-mnist), 60,000 training images, grayscale in [0, 1], not binarized",
                      "test": "the whole Fashion-MNIST test set (10,000 images, grayscale), as `evals/fashion_vae.py` measures every run",
                      "reference": "the 10,000 grayscale test images", "doc": "fashion.md", "items": "images"},
}


def subset_metrics(model: torch.nn.Module, x: torch.Tensor) -> Dict[str, float]:
    """PSNR/SSIM on the first SUBSET test images (what the shipped-model test re-measures)."""
    m = evaluate_reconstructions(model, x[:SUBSET], z=("sampled", "mean"), seed=0)
    return {k: float(m[k]) for k in ("psnr_sampled", "ssim_sampled", "psnr_mean_clamped", "ssim_mean_clamped")}


@torch.no_grad()
def draw(model: torch.nn.Module, x: torch.Tensor, title: str, path: Path, inputs_label: str = "test inputs (binarized)") -> None:
    """Test inputs, their reconstructions (mean z, clamped) and prior samples, 4x8 images each."""
    from stftblur.viz import image_panels, save_figure

    inputs = x[:32]
    panels = {
        inputs_label: inputs,
        "reconstructions (mean z, clamped)": model.decode(model.encode(inputs)[0]),
        "prior samples z ~ N(0, I), seed 0": sample_prior(model, 32, seed=0),
    }
    save_figure(image_panels(panels, nrow=8, scale=2, title=title), path)


def card(name: str, loss: str, info: Dict[str, Any]) -> str:
    m, s = info["test_set"], info["subset"]
    cfg = info["config"]["config"]
    data = DATASETS[info.get("dataset", "mnist")]
    protocol = ("the full protocol of the paper's Table 1" if cfg["epochs"] == 50 else
                f"the short protocol ({cfg['epochs']} epochs, beta {cfg['objective']['beta']:g}) of the Fashion-MNIST study")
    return f"""# `{name}`: {data['title']} beta-VAE trained with {LOSS_LABEL[loss]}

The paper's beta-VAE (latent dimension 2) trained on {data['title']} with {protocol} by this project
(`evals/reproduce.py`, run `{info['run']}`). Load it by name:

```bash
stftblur sample --checkpoint {name} --out samples/
stftblur eval-vae --checkpoint {name}
```

```python
from stftblur.models import load_vae
model = load_vae("{name}")
```

## How it was made

- Command: `{info['command']}`
- Objective: {json.dumps(info['config']['objective_resolved'])}
- Data: {data['train']}; batch {cfg['batch_size']},
  {cfg['epochs']} epochs = {info['summary']['step']:,} steps; Adam (eps {cfg['adam_eps']:g}) with a
  {cfg['lr_mode']} cyclical learning rate {cfg['lr_min']:g}..{cfg['lr_max']:g} (step size {cfg['lr_step_size']}); seed {cfg['seed']}.
- Device: {cfg['device']}, {info['config'].get('torch_threads', 'default')} torch thread(s), torch {info['config'].get('torch_version', '?')};
  {info['time']}
- Code: stftblur {info['config'].get('stftblur_version')}; shipped at git commit `{info['git_commit']}` by `python evals/ship_models.py`.

## Measured

On {data['test']}:

| PSNR / SSIM, sampled z, raw output (paper's convention) | PSNR / SSIM, mean z, clamped | LPC-SI of {info['n_samples']:,} prior samples | their spectral deficit against the test {data['items']} | LPC-SI of reconstructions | KL of the code, nats per test image |
|---|---|---|---|---|---|
| {m['psnr_sampled']:.2f} / {m['ssim_sampled']:.3f} | {m['psnr_mean_clamped']:.2f} / {m['ssim_mean_clamped']:.3f} | {m['lpc_si_samples']:.4f} | {m['spectral_deficit_samples_db']:+.2f} dB | {m['lpc_si_recon']:.4f} | {m['kl_test_nats']:.1f} |

(Spectral deficit: `stftblur.metrics.spectral_deficit`, band 0.25-0.5 cycles per pixel, against
{data['reference']}; positive means less high-frequency power, i.e. blurrier. See
[docs/metrics.md](../../docs/metrics.md). KL: the posterior's KL divergence from N(0, I), summed
over the latent dimensions as the objective counts it, averaged over the test images; the
released checkpoints' are in [docs/reproduction.md](../../docs/reproduction.md).)

On the first {SUBSET} test images (re-measured by `tests/test_shipped_models.py`): sampled z
{s['psnr_sampled']:.3f} dB / {s['ssim_sampled']:.4f}, mean z clamped {s['psnr_mean_clamped']:.3f} dB / {s['ssim_mean_clamped']:.4f}.
Seed spreads and the comparison with the other losses: [docs/{data['doc']}](../../docs/{data['doc']}).

![test inputs, reconstructions and prior samples](samples.png)
"""


def ship(run: str, x_test: torch.Tensor, n_samples: int, commit: str, models: Path = MODELS,
         name: str = "", dataset: str = "mnist") -> str:
    d = RUNS / run
    loss = parse_name(run)["loss"]
    args = LOSSES[loss] if dataset == "mnist" else FASHION_DATA + FASHION_LOSSES[loss]
    loss = loss.replace("-released", "") if dataset != "mnist" else loss
    name = name or loss.replace("+", "-")
    summary = json.loads((d / "summary.json").read_text())
    config = json.loads((d / "config.json").read_text())
    out = models / name
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(d / "model.safetensors", out / "model.safetensors")
    model = load_vae(out / "model.safetensors")
    print(f"measuring {run}", flush=True)
    secs = summary.get("seconds_this_session")
    resumed = summary.get("resumed_from_step")
    time = (f"{secs / 60:.0f} minutes (wall clock, on the project's 2-core CPU shared with other jobs) of training in its last session" + (f" (resumed at step {resumed:,}; earlier sessions' times were not recorded)" if resumed else "")
            if secs else "training time not recorded")
    info = {
        "run": f"evals/runs/{run}",
        "loss": loss,
        "command": "stftblur train-vae --out evals/runs/" + run + " --threads 1 " + " ".join(args + ["--epochs", str(config["config"]["epochs"]), "--seed", str(config["config"]["seed"])]),
        "dataset": dataset,
        "config": config,
        "summary": {k: summary.get(k) for k in ("step", "epoch", "stopped_by", "seconds_this_session", "resumed_from_step")},
        "time": time + ".",
        "git_commit": commit,
        "n_samples": n_samples,
        "test_set": {**measure(model, x_test, n_samples), "kl_test_nats": rate(model, x_test)},
        "subset": subset_metrics(model, x_test),
        "machine": describe("cpu"),
    }
    data = DATASETS[dataset]
    where = "this project's full-protocol run" if dataset == "mnist" else f"{data['title']}, this project's run"
    draw(model, x_test, f"{name}: {LOSS_LABEL[loss]} ({where})", out / "samples.png", data["inputs"])
    (out / "card.json").write_text(json.dumps(info, indent=1, default=float) + "\n")
    (out / "README.md").write_text(card(name, loss, info))
    return name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="", help="comma-separated run names (default: every finished full-*-s0 run)")
    ap.add_argument("--n-samples", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=MODELS, help="models folder (default: models/)")
    ap.add_argument("--fashion", action="store_true", help="ship FASHION_SHIPPED (Fashion-MNIST) instead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.fashion:
        missing = [r for r in FASHION_SHIPPED.values() if not (RUNS / r / "summary.json").exists()]
        if missing:
            ap.error(f"--fashion: not finished (no summary.json): {', '.join(missing)}")
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        x_fashion = load_dataset("fashion-mnist", split="test", binarize=False).images
        for name, r in FASHION_SHIPPED.items():
            ship(r, x_fashion, args.n_samples, commit, args.out, name=name, dataset="fashion-mnist")
            print(f"shipped models/{name}", flush=True)
        return 0
    runs: List[str] = [r for r in args.runs.split(",") if r] or sorted(
        p.name for p in RUNS.glob("full-*-s0") if (p / "summary.json").exists())
    missing = [r for r in runs if not (RUNS / r / "summary.json").exists()]
    if missing:
        ap.error(f"--runs: not finished (no summary.json): {', '.join(missing)}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    x_test = load_dataset("mnist", split="test", binarize=True).images
    for r in runs:
        print(f"shipped models/{ship(r, x_test, args.n_samples, commit, args.out)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
