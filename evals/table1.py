"""Table 1, measured: the paper's numbers, the authors' released checkpoints and this project's runs.

    python evals/table1.py [--n-samples 10000] [--threads 2]

Every model is measured the same way, on the whole MNIST test set (binarized at 0.5):
PSNR/SSIM of the RAW decoder output with a sampled z (the paper's convention, noise seed 0) and
with z = posterior mean on the output clamped to [0, 1]; LPC-SI sharpness (stftblur.metrics.lpc_si,
clamped to [0, 1]) of `--n-samples` prior samples z ~ N(0, I) (seed 0) and of the reconstructions
(posterior mean, clamped), and the spectral deficit of the prior samples against the test digits.
Writes evals/results/table1.json and docs/reproduction.md (the figure comes from
evals/vae_figure.py). Runs whose weights did not change since the last measurement are not
measured again (--remeasure forces it). Runs come from evals/reproduce.py (evals/runs/*/summary.json marks
a finished run); unfinished runs are listed as such, never averaged in.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "evals"))

from _machine import describe  # noqa: E402
from _stats import format_diff, welch  # noqa: E402
from reproduce import DEFICIT_SEEDS, REPLICATION_SEEDS  # noqa: E402

from stftblur.data import load_dataset  # noqa: E402
from stftblur.metrics import lpc_si, radial_power_spectrum, spectral_deficit  # noqa: E402
from stftblur.models import load_author_checkpoint, load_vae  # noqa: E402
from stftblur.training.evaluation import evaluate_reconstructions, sample_prior  # noqa: E402

RUNS = ROOT / "evals" / "runs"
RESULTS = ROOT / "evals" / "results" / "table1.json"
REPORT = ROOT / "docs" / "reproduction.md"
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
LOSS_ORDER = ["l2", "l1", "ssim", "dft+ssim", "ours", "ffl", "lpl", "l2-released"]
LOSS_LABEL = {
    "l2": "L2", "l1": "L1", "ssim": "SSIM", "dft+ssim": "DFT+SSIM", "ours": "Ours (paper-code preset)",
    "ffl": "L2 + focal frequency loss", "lpl": "SSIM + LocalPhaseLoss (project defaults)",
    "l2-released": "L2 with the released checkpoint's apparent settings (beta 0.25, pixel weight 784)",
    "ssim-released": "SSIM, released settings (beta 0.25)",
    "ours-released": "Ours (paper-code preset), released settings (beta 0.25)",
}
# Rows with short-protocol seeds only (no full-protocol run), after LOSS_ORDER's in the seed table.
SHORT_ONLY = ["ssim-released", "ours-released"]
# Rows that are not the paper's but are compared with one of its released checkpoints.
RELEASED_AS = {"l2-released": "l2"}


@torch.no_grad()
def measure(model: torch.nn.Module, x_test: torch.Tensor, n_samples: int) -> Dict[str, float]:
    m = evaluate_reconstructions(model, x_test, z=("sampled", "mean"), seed=0)
    out = {k: v for k, v in m.items() if k in ("psnr_sampled", "ssim_sampled", "psnr_mean_clamped", "ssim_mean_clamped")}
    samples = sample_prior(model, n_samples, seed=0).clamp(0, 1)
    s = lpc_si(samples)
    out["lpc_si_samples"] = float(s.mean())
    out["spectral_deficit_samples_db"] = spectral_deficit(samples, _reference_spectrum(x_test)).deficit_db
    model.eval()
    recon = torch.cat([model.decode(model.encode(x_test[i : i + 500])[0]) for i in range(0, len(x_test), 500)])
    r = lpc_si(recon.clamp(0, 1))
    out["lpc_si_recon"] = float(r.mean())
    return out


@torch.no_grad()
def rate(model: torch.nn.Module, x_test: torch.Tensor) -> float:
    """Mean KL(q(z|x) || N(0, I)) over the test images in nats, summed over the latent dimensions
    as in the training objective: how much the code carries about each image (little means the
    decoder draws near-average digits, i.e. blur)."""
    model.eval()
    total = 0.0
    for i in range(0, len(x_test), 1000):
        mu, logvar = model.encode(x_test[i : i + 1000])
        total += float((0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)).sum())
    return total / len(x_test)


_REF: Dict[int, Any] = {}


def _reference_spectrum(x_test: torch.Tensor) -> Any:
    """Radial power spectrum of the binarized test digits (computed once)."""
    if id(x_test) not in _REF:
        _REF[id(x_test)] = radial_power_spectrum(x_test)
    return _REF[id(x_test)]


def _fingerprint(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


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


# Which rows are compared at the short protocol, and on what: each frequency-term row against
# the loss it adds to (SSIM), SSIM against L2, and the project's configuration against the paper's.
# The paper's comparison is repeated with the released checkpoints' apparent settings, and SSIM
# alone is compared across the two settings (what the KL weight does).
COMPARISONS = [("ours", "ssim"), ("lpl", "ssim"), ("dft+ssim", "ssim"), ("lpl", "ours"), ("ssim", "l2"), ("ffl", "l2"),
               ("l1", "l2"), ("ours-released", "ssim-released"), ("ssim-released", "ssim")]
COMPARED = ("psnr_sampled", "ssim_sampled", "lpc_si_samples", "spectral_deficit_samples_db")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-samples", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--remeasure", action="store_true", help="measure every run again (default: reuse the "
                    "numbers of runs whose weights did not change)")
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
        "runs_n_samples": args.n_samples,
    }
    prev_author = json.loads(RESULTS.read_text()).get("author_checkpoints", {}) if RESULTS.exists() and not args.remeasure else {}
    for loss, fname in AUTHOR_FILES.items():
        path = AUTHOR / fname
        old = prev_author.get(loss, {})
        if not path.exists():
            continue
        model = load_author_checkpoint(path)
        if old.get("n_samples") == args.n_samples and "spectral_deficit_samples_db" in old:
            results["author_checkpoints"][loss] = old
        else:
            print(f"measuring author checkpoint {fname}", flush=True)
            results["author_checkpoints"][loss] = {**measure(model, x_test, args.n_samples), "n_samples": args.n_samples}
        results["author_checkpoints"][loss]["kl_test_nats"] = rate(model, x_test)  # cheap: always measured
    previous = json.loads(RESULTS.read_text()).get("runs", {}) if RESULTS.exists() and not args.remeasure else {}
    # fm-* runs are the Fashion-MNIST study's (evals/fashion_vae.py), measured on their own test set.
    names = sorted(p.name for p in RUNS.iterdir() if p.is_dir() and not p.name.startswith("fm-")) if RUNS.exists() else []
    for name in names:
        info = run_info(name)
        if info is None:
            results["runs"][name] = {"complete": False}
            continue
        info.update(parse_name(name))
        info["weights_sha256"] = _fingerprint(RUNS / name / "model.safetensors")
        old = previous.get(name, {})
        model = load_vae(RUNS / name)
        if (old.get("weights_sha256") == info["weights_sha256"] and old.get("n_samples") == args.n_samples
                and "spectral_deficit_samples_db" in old.get("metrics", {})):
            info["metrics"] = old["metrics"]  # the same weights were measured before
        else:
            print(f"measuring run {name}", flush=True)
            info["metrics"] = measure(model, x_test, args.n_samples)
        info["metrics"]["kl_test_nats"] = rate(model, x_test)  # cheap: always measured
        info["n_samples"] = args.n_samples
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
    results["short_protocol_differences"] = {
        f"{a} - {b}": {m: welch(groups[a][m], groups[b][m]) for m in COMPARED}
        for a, b in COMPARISONS if a in groups and b in groups and len(groups[a]["psnr_sampled"]) > 1 and len(groups[b]["psnr_sampled"]) > 1
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, default=float) + "\n")
    write_report(results)
    print(f"wrote {RESULTS.relative_to(ROOT)} and {REPORT.relative_to(ROOT)}")
    return 0


DIGITS = (3, 4, 4, 2)  # decimals of the COMPARED metrics


def _welch_cell(x: Dict[str, Any], nd: int) -> str:
    return format_diff(x, nd) + (" **yes**" if x["exceeds_spread"] else " no")


def _bonferroni_cell(a: List[float], b: List[float], nd: int, family: int) -> str:
    """:func:`_welch_cell` of a - b; a **yes** says whether it still holds at the Bonferroni
    level over a ``family`` of comparisons."""
    w = welch(a, b)
    cell = _welch_cell(w, nd)
    if w["exceeds_spread"]:
        cell += ", *holds*" if welch(a, b, level=1 - 0.05 / family)["exceeds_spread"] else ", not after Bonferroni"
    return cell


def _fmt(v: Any, nd: int = 3) -> str:
    return "–" if not isinstance(v, (int, float)) or v != v else f"{v:.{nd}f}"


def write_report(res: Dict[str, Any]) -> None:
    lines = [
        "# Reproducing Table 1",
        "",
        "Generated by `python evals/table1.py` from the runs of `python evals/reproduce.py`; the numbers",
        "are in [evals/results/table1.json](../evals/results/table1.json). Do not edit by hand.",
        "",
        "Conventions. **Sampled z, raw output** (the paper's and the authors' code's convention): the",
        "binarized test image against the decoder's raw output for one posterior sample of z (noise",
        "seed 0), PSNR and SSIM per image, averaged over the 10,000 test images. **Mean z, clamped**:",
        "the same against the output for z = posterior mean, clamped to [0, 1] (what a PNG shows).",
        f"**LPC-SI** (higher is sharper) and the **spectral deficit** (dB; less high-frequency power",
        "than the binarized test digits, band 0.25-0.5 cycles per pixel, see docs/metrics.md; lower is",
        f"sharper) of {res['runs_n_samples'] if 'runs_n_samples' in res else 10000} prior samples z ~ N(0, I) (seed 0), clamped to [0, 1].",
        "**KL** (nats): the mean KL divergence of the posterior from N(0, I) over the test images,",
        "summed over the latent dimensions as in the training objective: how much the code carries",
        "about each image (a code that carries little makes the decoder draw near-average, blurred digits).",
        "",
        "## The paper, the released checkpoints, and this project's runs (full protocol: 50 epochs, seed 0)",
        "",
        "| loss | paper (sampled z) | released, TensorFlow (sampled z) | released, stftblur (sampled z) | released, mean z clamped | this project (sampled z) | this project, mean z clamped | LPC-SI samples: released / this project | spectral deficit dB: released / this project | KL nats: released / this project |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    pending = []
    for loss in LOSS_ORDER:
        p = res["paper"].get(loss)
        tf = res["author_tf"].get(RELEASED_AS.get(loss, loss))
        a = res["author_checkpoints"].get(RELEASED_AS.get(loss, loss))
        info = res["runs"].get(f"full-{loss}-s0")
        m = info["metrics"] if info and info.get("complete") else None
        if m is None:
            pending.append(f"full-{loss}-s0")
        cells = [
            LOSS_LABEL[loss],
            f"{p['psnr']:.2f} / {p['ssim']:.3f}" if p else "–",
            f"{tf['psnr_sampled']:.2f} / {tf['ssim_sampled']:.3f}" if tf else "–",
            f"{a['psnr_sampled']:.2f} / {a['ssim_sampled']:.3f}" if a else "–",
            f"{a['psnr_mean_clamped']:.2f} / {a['ssim_mean_clamped']:.3f}" if a else "–",
            f"{m['psnr_sampled']:.2f} / {m['ssim_sampled']:.3f}" if m else "not finished",
            f"{m['psnr_mean_clamped']:.2f} / {m['ssim_mean_clamped']:.3f}" if m else "–",
            f"{_fmt(a and a['lpc_si_samples'])} / {_fmt(m and m['lpc_si_samples'])}",
            f"{_fmt(a and a.get('spectral_deficit_samples_db'), 2)} / {_fmt(m and m.get('spectral_deficit_samples_db'), 2)}",
            f"{_fmt(a and a.get('kl_test_nats'), 1)} / {_fmt(m and m.get('kl_test_nats'), 1)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "The last row is not one of the paper's: it trains L2 with the KL summed over the batch of 50",
              "(beta 0.25 per image) and the squared error summed over the 784 pixels, the settings the",
              "released checkpoints' KL points to (docs/loss-design.md, \"The VAE\"); its released columns",
              "repeat the released L2 checkpoint it is compared with."]
    if pending:
        lines += ["", f"Not finished yet (no summary.json): {', '.join(pending)}; `python evals/reproduce.py --list` shows how far each run got."]
    devices: Dict[str, List[str]] = {}
    for name, info in sorted(res["runs"].items()):
        if info.get("complete"):
            devices.setdefault(info["config"]["config"].get("device", "unknown"), []).append(name)
    if devices:
        where = "; ".join(f"{dev}: {len(names)} run{'s' if len(names) > 1 else ''}"
                          + ("" if len(devices) == 1 else f" ({', '.join(names)})") for dev, names in devices.items())
        lines += ["", f"Devices of the finished runs (each run's config.json records its own): {where}."]
    sp = res.get("short_protocol", {})
    if sp:
        lines += ["", "## Seed spread (short protocol: 10 epochs, mean ± standard deviation over seeds)", "",
                  "| loss | seeds | PSNR sampled | SSIM sampled | PSNR mean z clamped | SSIM mean z clamped | LPC-SI samples | spectral deficit dB | KL nats |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for loss in LOSS_ORDER + SHORT_ONLY:
            if loss in sp:
                s = sp[loss]
                cell = lambda k, nd: f"{s[k]['mean']:.{nd}f} ± {_fmt(s[k]['std'], nd)}" if k in s else "–"  # noqa: E731
                lines.append(f"| {LOSS_LABEL[loss]} | {s['psnr_sampled']['n']} | {cell('psnr_sampled', 3)} | {cell('ssim_sampled', 4)} | "
                             f"{cell('psnr_mean_clamped', 3)} | {cell('ssim_mean_clamped', 4)} | {cell('lpc_si_samples', 4)} | "
                             f"{cell('spectral_deficit_samples_db', 2)} | {cell('kl_test_nats', 1)} |")
        if any(loss in sp for loss in SHORT_ONLY):
            lines += ["", "Rows marked \"released settings\" train with the KL weighted as the released checkpoints'",
                      "codes suggest (beta 0.25: summed over the batch of 50; docs/loss-design.md, \"The VAE\"): the",
                      "paper's comparison, ours against SSIM alone, with codes that carry what the released ones carry."]
        diffs = res.get("short_protocol_differences", {})
        lines += ["", "### Do the differences exceed the seed spread?", "",
                  "Difference of the means with its 95% Welch t-interval over seeds; **yes** where the interval",
                  "excludes 0. With 3 seeds a row needs a large, consistent difference to count."]
        if diffs:
            lines += ["", "| rows | PSNR sampled | SSIM sampled | LPC-SI samples | spectral deficit dB |", "|---|---|---|---|---|"]
            for pair, d in diffs.items():
                row = [pair]
                for m, nd in zip(COMPARED, DIGITS):
                    row.append(_welch_cell(d[m], nd))
                lines.append("| " + " | ".join(row) + " |")
        else:
            lines += ["", "No pair of rows has two or more finished seeds yet."]
    lines += _ablation_section(res)
    lines += _confirmation_section(res)
    lines += _confirmation_section(res, "rep")
    lines += _confirmation_section(res, "dfc")
    lines += ["", "## Figure", "",
              "Test reconstructions and prior samples of the released checkpoints and of the models this",
              "project ships (`models/`), with their LPC-SI and spectral deficit: `python evals/vae_figure.py`.",
              "", "![VAE models side by side](figures/vae_models.png)", ""]
    REPORT.write_text("\n".join(lines).rstrip() + "\n")


def _ablation_section(res: Dict[str, Any]) -> List[str]:
    """The loss-design study in the VAE: every variant against SSIM alone and the project default."""
    def group(prefix: str) -> Dict[str, List[float]]:
        # the seeds of exactly this row: "short-ssim-s0" but not "short-ssim-released-s0"
        runs = [r["metrics"] for n, r in res["runs"].items()
                if re.fullmatch(re.escape(prefix) + r"\d+", n) and r.get("complete")]
        return {k: [m[k] for m in runs] for k in COMPARED}

    abl = sorted({n[len("abl-"):].rsplit("-s", 1)[0] for n, r in res["runs"].items() if n.startswith("abl-") and r.get("complete")})
    if not abl:
        return []
    lines = ["", "## Loss-design study in the VAE (short protocol, variants of the project's configuration)", "",
             "Each variant changes one option of `--loss ours --preset default` (`lpl`; see ABLATIONS and MORE_ABLATIONS in",
             "`evals/reproduce.py`). The question (docs/loss-design.md) is whether a variant beats SSIM alone",
             "by more than the seed spread: each metric's cell is the variant's mean ± std over seeds, then its",
             "difference from SSIM alone with a 95% Welch interval (**yes** where it excludes 0); the last",
             "column is the PSNR difference from `lpl`, what the option changes.", "",
             "| variant | seeds | PSNR sampled | SSIM sampled | LPC-SI samples | spectral deficit dB | PSNR - lpl |",
             "|---|---|---|---|---|---|---|"]
    ssim_runs, lpl_runs = group("short-ssim-s"), group("short-lpl-s")
    groups = {"ssim": ssim_runs, "lpl": lpl_runs, **{name: group(f"abl-{name}-s") for name in abl}}
    groups = {name: g for name, g in groups.items() if g["psnr_sampled"]}  # a reference row may not have finished
    # every vs-SSIM interval of the table is one comparison of a family; Bonferroni over all of them
    family = len(COMPARED) * sum(1 for name, g in groups.items()
                                 if name != "ssim" and len(g["psnr_sampled"]) > 1 and len(ssim_runs["psnr_sampled"]) > 1)
    if family:
        lines.insert(-3, f"With {family} such comparisons, about {0.05 * family:.1f} would exclude 0 by chance alone: a **yes** is"
                         f" marked *holds* where its Bonferroni interval (level 1 - 0.05/{family}) excludes 0 too.")
    for name, g in groups.items():
        n = len(g["psnr_sampled"])
        cells = []
        for k, nd in zip(COMPARED, DIGITS):
            cell = f"{statistics.fmean(g[k]):.{nd}f}" + (f" ± {statistics.stdev(g[k]):.{nd}f}" if n > 1 else "")
            if name != "ssim" and n > 1 and len(ssim_runs[k]) > 1:
                cell += "<br>vs SSIM: " + _bonferroni_cell(g[k], ssim_runs[k], nd, family)
            cells.append(cell)
        if name in ("ssim", "lpl"):
            cells.append("")
        elif n > 1 and len(lpl_runs["psnr_sampled"]) > 1:
            cells.append(_welch_cell(welch(g["psnr_sampled"], lpl_runs["psnr_sampled"]), 3))
        else:
            cells.append("needs 2+ seeds")
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return lines


# The tests on fresh seeds fixed before they ran, each with one primary endpoint (evals/reproduce.py):
# run-name prefix -> (heading, what fixed it, primary metric of COMPARED, its seeds).
FRESH_TESTS = {
    "rep": ("Replication of the confirmation on further fresh seeds",
            "Fixed after the confirmation and before these runs (`REPLICATION_SEEDS` in",
            "ssim_sampled", REPLICATION_SEEDS),
    "dfc": ("Follow-up: the spectral deficit on further fresh seeds",
            "Fixed after the replication and before these runs (`DEFICIT_SEEDS` in",
            "spectral_deficit_samples_db", DEFICIT_SEEDS),
}
METRIC_NAMES = {"psnr_sampled": "PSNR (sampled z)", "ssim_sampled": "SSIM (sampled z)",
                "lpc_si_samples": "LPC-SI of prior samples", "spectral_deficit_samples_db": "spectral deficit of prior samples (dB)"}


def _confirmation_section(res: Dict[str, Any], kind: str = "conf") -> List[str]:
    """The study's best variant against SSIM alone on fresh seeds only: the confirmation
    (``conf-*`` runs), or one of the FRESH_TESTS (``rep-*``, ``dfc-*``) with its verdict on its
    primary endpoint once all its seeds are measured."""
    by_loss: Dict[str, Dict[str, List[float]]] = {}
    for name, r in res["runs"].items():
        if name.startswith(kind + "-") and r.get("complete"):
            g = by_loss.setdefault(r["loss"], {k: [] for k in COMPARED})
            for k in COMPARED:
                g[k].append(r["metrics"][k])
    variants = sorted(v for v in by_loss if v != "ssim")
    if not variants or "ssim" not in by_loss:
        return []
    if kind == "conf":
        lines = ["", "## Confirmation of the VAE study on fresh seeds", "",
                 "The rule, fixed before any variant's third seed was measured (`CONFIRM_VARIANT` in",
                 "`evals/reproduce.py`): the variant with the largest mean PSNR gain over SSIM alone on seeds",
                 "0-2 is trained again, with SSIM alone, on fresh seeds; only those seeds enter this test",
                 "(difference from SSIM alone, 95% Welch interval, **yes** where it excludes 0).",
                 f"With {len(COMPARED)} metrics tested, a **yes** is marked *holds* where its Bonferroni interval",
                 f"(level 1 - 0.05/{len(COMPARED)}) excludes 0 too.", ""]
    else:
        heading, fixed, primary, seeds = FRESH_TESTS[kind]
        lines = ["", f"## {heading}", "",
                 fixed,
                 "`evals/reproduce.py`): the same two configurations on seeds no earlier test has seen. The",
                 f"primary endpoint is one 95% Welch test on the {METRIC_NAMES[primary]}; the other columns are secondary.", ""]
    lines += ["| variant | seeds (SSIM) | PSNR sampled | SSIM sampled | LPC-SI samples | spectral deficit dB |",
              "|---|---|---|---|---|---|"]
    base = by_loss["ssim"]
    for v in variants:
        g = by_loss[v]
        n, nb = len(g["psnr_sampled"]), len(base["psnr_sampled"])
        cells = []
        for k, nd in zip(COMPARED, DIGITS):
            if n < 2 or nb < 2:
                cells.append("needs 2+ seeds each")
                continue
            cells.append(_bonferroni_cell(g[k], base[k], nd, len(COMPARED)) if kind == "conf"
                         else _welch_cell(welch(g[k], base[k]), nd))
        lines.append(f"| {v} | {n} ({nb}) | " + " | ".join(cells) + " |")
        if kind != "conf":
            lines += ["", _verdict(g[primary], base[primary], primary, len(seeds))]
    return lines


def _verdict(variant: List[float], ssim: List[float], primary: str, planned: int) -> str:
    """The pre-registered test's answer: made only when every planned seed of both arms is measured."""
    if len(variant) < planned or len(ssim) < planned:
        return (f"The test is made at {planned} seeds of each; {len(variant)} ({len(ssim)}) are measured so far,"
                " and the row above is not its answer.")
    w = welch(variant, ssim)
    nd = DIGITS[COMPARED.index(primary)]
    answer = "**confirmed**: its 95% interval excludes 0" if w["exceeds_spread"] else "**not confirmed**: its 95% interval contains 0"
    return (f"Primary endpoint at all {planned} seeds of each, {METRIC_NAMES[primary]}, difference from SSIM alone: "
            f"{format_diff(w, nd)}, {answer}.")


if __name__ == "__main__":
    sys.exit(main())
