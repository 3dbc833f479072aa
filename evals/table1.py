"""Table 1, measured: the paper's numbers, the authors' released checkpoints and this project's runs.

    python evals/table1.py [--n-samples 10000] [--threads 2]

Every model is measured the same way, on the whole MNIST test set (binarized at 0.5):
PSNR/SSIM of the RAW decoder output with a sampled z (the paper's convention, noise seed 0) and
with z = posterior mean on the output clamped to [0, 1]; LPC-SI sharpness (stftblur.metrics.lpc_si,
clamped to [0, 1]) of `--n-samples` prior samples z ~ N(0, I) (seed 0) and of the reconstructions
(posterior mean, clamped). Writes evals/results/table1.json and docs/reproduction.md; a finished
full run's samples.png and reconstructions.png are copied to docs/figures/reproduction/ and shown
in a Figures section (neither exists while no full run has finished). Runs come from
evals/reproduce.py (evals/runs/*/summary.json marks a finished run); unfinished runs are listed as
such, never averaged in.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "evals"))

from _machine import describe  # noqa: E402

from stftblur.data import load_dataset  # noqa: E402
from stftblur.metrics import lpc_si  # noqa: E402
from stftblur.models import load_author_checkpoint, load_vae  # noqa: E402
from stftblur.training.evaluation import evaluate_reconstructions, sample_prior  # noqa: E402

RUNS = ROOT / "evals" / "runs"
RESULTS = ROOT / "evals" / "results" / "table1.json"
REPORT = ROOT / "docs" / "reproduction.md"
FIGURES = ROOT / "docs" / "figures" / "reproduction"
AUTHOR = ROOT.parent / "shared" / "reference" / "author_vae"

# Table 1 of the paper (sampled z, raw output, per the authors' code).
PAPER = {"l2": (10.20, 0.41), "l1": (10.13, 0.32), "ssim": (11.38, 0.495), "dft+ssim": (11.51, 0.486), "ours": (11.93, 0.492)}
# The released checkpoints measured with TensorFlow 2.21 (../shared/paper/author-code-notes.md).
AUTHOR_TF = {
    "l2": (12.77, 0.406, 12.873, 0.4139),
    "l1": (10.15, 0.291, 10.368, 0.3143),
    "ssim": (11.85, 0.488, 11.866, 0.4893),
    "dft+ssim": (11.65, 0.480, 11.664, 0.4813),
    "ours": (11.93, 0.488, 11.939, 0.4894),
}
AUTHOR_FILES = {"l2": "l2.npz", "l1": "l1.npz", "ssim": "ssim.npz", "dft+ssim": "dft_ssim.npz", "ours": "ours.npz"}
LOSS_ORDER = ["l2", "l1", "ssim", "dft+ssim", "ours", "ffl", "lpl"]
LOSS_LABEL = {
    "l2": "L2", "l1": "L1", "ssim": "SSIM", "dft+ssim": "DFT+SSIM", "ours": "Ours (paper-code preset)",
    "ffl": "L2 + focal frequency loss", "lpl": "SSIM + LocalPhaseLoss (project defaults)",
}


@torch.no_grad()
def measure(model: torch.nn.Module, x_test: torch.Tensor, n_samples: int) -> Dict[str, float]:
    m = evaluate_reconstructions(model, x_test, z=("sampled", "mean"), seed=0)
    out = {k: v for k, v in m.items() if k in ("psnr_sampled", "ssim_sampled", "psnr_mean_clamped", "ssim_mean_clamped")}
    samples = sample_prior(model, n_samples, seed=0).clamp(0, 1)
    s = lpc_si(samples)
    out["lpc_si_samples"] = float(s.mean())
    model.eval()
    recon = torch.cat([model.decode(model.encode(x_test[i : i + 500])[0]) for i in range(0, len(x_test), 500)])
    r = lpc_si(recon.clamp(0, 1))
    out["lpc_si_recon"] = float(r.mean())
    return out


def run_info(name: str) -> Optional[Dict[str, Any]]:
    d = RUNS / name
    if not (d / "summary.json").exists():
        return None
    cfg = json.loads((d / "config.json").read_text())
    return {"dir": str(d.relative_to(ROOT)), "config": cfg}


def parse_name(name: str) -> Dict[str, str]:
    kind, rest = name.split("-", 1)
    loss, seed = rest.rsplit("-s", 1)
    return {"kind": kind, "loss": loss, "seed": seed}


def spread(values: List[float]) -> Dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else float("nan"),
        "n": len(values),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-samples", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x_test = load_dataset("mnist", split="test", binarize=True).images
    results: Dict[str, Any] = {
        "machine": describe("cpu"),
        "command": "python evals/table1.py " + " ".join(sys.argv[1:]),
        "protocol": {
            "test_images": int(len(x_test)),
            "psnr_ssim": "binarized test image vs RAW output (sampled z, seed 0) and vs clamped output (z = posterior mean); per-image, averaged",
            "lpc_si": f"stftblur.metrics.lpc_si of {args.n_samples} prior samples (seed 0) and of the test reconstructions (z = mean), clamped to [0, 1]",
        },
        "paper": {k: {"psnr": v[0], "ssim": v[1]} for k, v in PAPER.items()},
        "author_tf": {k: dict(zip(("psnr_sampled", "ssim_sampled", "psnr_mean", "ssim_mean"), v)) for k, v in AUTHOR_TF.items()},
        "author_checkpoints": {},
        "runs": {},
    }
    for loss, fname in AUTHOR_FILES.items():
        path = AUTHOR / fname
        if path.exists():
            print(f"measuring author checkpoint {fname}", flush=True)
            results["author_checkpoints"][loss] = measure(load_author_checkpoint(path), x_test, args.n_samples)
    names = sorted(p.name for p in RUNS.iterdir() if p.is_dir()) if RUNS.exists() else []
    for name in names:
        info = run_info(name)
        if info is None:
            results["runs"][name] = {"complete": False}
            continue
        print(f"measuring run {name}", flush=True)
        model = load_vae(RUNS / name)
        info.update(parse_name(name))
        info["metrics"] = measure(model, x_test, args.n_samples)
        info["complete"] = True
        results["runs"][name] = info
    # Seed spreads of the short protocol.
    groups: Dict[str, Dict[str, List[float]]] = {}
    for name, info in results["runs"].items():
        if info.get("complete") and info["kind"] == "short":
            g = groups.setdefault(info["loss"], {})
            for k, v in info["metrics"].items():
                g.setdefault(k, []).append(v)
    results["short_protocol"] = {loss: {k: spread(v) for k, v in g.items()} for loss, g in groups.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, default=float) + "\n")
    write_report(results)
    print(f"wrote {RESULTS.relative_to(ROOT)} and {REPORT.relative_to(ROOT)}")
    return 0


def _fmt(v: Optional[float], nd: int = 3) -> str:
    return "–" if v is None or v != v else f"{v:.{nd}f}"


def write_report(res: Dict[str, Any]) -> None:
    lines = [
        "# Reproducing Table 1",
        "",
        "Generated by `python evals/table1.py` from the runs of `python evals/reproduce.py`; the numbers",
        "are in [evals/results/table1.json](../evals/results/table1.json). Do not edit by hand.",
        "",
        f"Protocol: {res['protocol']['psnr_ssim']}. LPC-SI: {res['protocol']['lpc_si']}.",
        "",
        "## The paper, the released checkpoints, and this project's runs (full protocol, seed 0)",
        "",
        "| loss | paper PSNR / SSIM | released ckpt, TF (sampled z) | released ckpt, ours (sampled z) | ours: mean z, clamped | LPC-SI samples | LPC-SI recon |",
        "|---|---|---|---|---|---|---|",
    ]
    for loss in LOSS_ORDER:
        if loss not in AUTHOR_FILES:
            continue
        p = res["paper"].get(loss)
        tf = res["author_tf"].get(loss)
        a = res["author_checkpoints"].get(loss)
        lines.append(
            f"| {LOSS_LABEL[loss]} (released) | {p['psnr']:.2f} / {p['ssim']:.3f} | {tf['psnr_sampled']:.2f} / {tf['ssim_sampled']:.3f} | "
            + (f"{a['psnr_sampled']:.2f} / {a['ssim_sampled']:.3f} | {a['psnr_mean_clamped']:.2f} / {a['ssim_mean_clamped']:.3f} | "
               f"{_fmt(a['lpc_si_samples'])} | {_fmt(a['lpc_si_recon'])} |" if a else "– | – | – | – |")
        )
    lines += ["", "| this project's run (50 epochs, seed 0) | PSNR / SSIM (sampled z, raw) | mean z, clamped | LPC-SI samples | LPC-SI recon |", "|---|---|---|---|---|"]
    pending = []
    for loss in LOSS_ORDER:
        name = f"full-{loss}-s0"
        info = res["runs"].get(name)
        if not info or not info.get("complete"):
            pending.append(name)
            continue
        m = info["metrics"]
        lines.append(
            f"| {LOSS_LABEL[loss]} | {m['psnr_sampled']:.2f} / {m['ssim_sampled']:.3f} | {m['psnr_mean_clamped']:.2f} / {m['ssim_mean_clamped']:.3f} | "
            f"{_fmt(m['lpc_si_samples'])} | {_fmt(m['lpc_si_recon'])} |"
        )
        for fig in ("samples.png", "reconstructions.png"):
            src = ROOT / info["dir"] / fig
            if src.exists():
                FIGURES.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, FIGURES / f"{loss}-{fig}")
    if pending:
        lines += ["", f"Not finished yet (no summary.json): {', '.join(pending)}."]
    sp = res.get("short_protocol", {})
    if sp:
        lines += ["", "## Seed spread (short protocol: 10 epochs)", "",
                  "| loss | seeds | PSNR sampled | SSIM sampled | SSIM mean z clamped | LPC-SI samples |", "|---|---|---|---|---|---|"]
        for loss in LOSS_ORDER:
            if loss in sp:
                s = sp[loss]
                lines.append(
                    f"| {LOSS_LABEL[loss]} | {s['psnr_sampled']['n']} | {s['psnr_sampled']['mean']:.3f} ± {_fmt(s['psnr_sampled']['std'])} | "
                    f"{s['ssim_sampled']['mean']:.4f} ± {_fmt(s['ssim_sampled']['std'], 4)} | "
                    f"{s['ssim_mean_clamped']['mean']:.4f} ± {_fmt(s['ssim_mean_clamped']['std'], 4)} | "
                    f"{s['lpc_si_samples']['mean']:.4f} ± {_fmt(s['lpc_si_samples']['std'], 4)} |"
                )
    abl = {n: i for n, i in res["runs"].items() if n.startswith("abl-") and i.get("complete")}
    if abl:
        lines += ["", "## Ablations (short protocol, seed 0, around the project's configuration)", "",
                  "| run | SSIM sampled | PSNR sampled | LPC-SI samples |", "|---|---|---|---|"]
        for n, i in abl.items():
            m = i["metrics"]
            lines.append(f"| {n} | {m['ssim_sampled']:.4f} | {m['psnr_sampled']:.3f} | {_fmt(m['lpc_si_samples'], 4)} |")
    figures = [loss for loss in LOSS_ORDER if (FIGURES / f"{loss}-samples.png").exists()]
    if figures:
        lines += ["", "## Figures", ""]
    for loss in figures:
        lines += [f"**{LOSS_LABEL[loss]}**: prior samples, reconstructions", "",
                  f"![{loss} samples](figures/reproduction/{loss}-samples.png) ![{loss} reconstructions](figures/reproduction/{loss}-reconstructions.png)", ""]
    REPORT.write_text("\n".join(lines).rstrip() + "\n")


if __name__ == "__main__":
    sys.exit(main())
