"""Deblurring benchmark: a timm-encoder restoration network trained with L1, L1+SSIM, L1+FFL, L1+LocalPhaseLoss.

    python evals/restoration.py [--losses l1,l1_ssim,l1_ffl,l1_local_phase] [--seeds 0]
                                [--steps 300] [--device auto|cpu|cuda] [--threads 1]
                                [--out-dir runs/restoration] [--json evals/results/restoration.json]
                                [--figure docs/figures/restoration.png] [--fresh] [--report-only]

For every (loss, seed): train ``stftblur.restoration.RestorationNet`` on degraded crops of the
training photographs, restore the held-out test crops, write them as PNG files to
``OUT_DIR/<loss>/seed<seed>/`` (the sharp references to ``OUT_DIR/sharp/``, the degraded inputs
to ``OUT_DIR/blurry/``) and score them with ``stftblur.evaluate`` (the code of ``stftblur eval``;
``stftblur eval --images OUT_DIR/l1/seed0 --reference OUT_DIR/sharp`` prints the same numbers).

Runs are merged into the JSON file: invoking the script once per loss (or seed) adds to the
results of earlier invocations with the same configuration (``--fresh`` starts over; a
different configuration is an error). After every invocation the per-loss summary, the figure
and the Markdown table (printed) are recomputed from everything in the JSON.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("psnr", "ssim", "lpc_si")
FIGURE_IMAGES = ("camera_0.png", "clock_1.png", "coins_2.png", "text_0.png")
LOSS_TITLES = {"l1": "L1", "l1_ssim": "L1+SSIM", "l1_ffl": "L1+FFL", "l1_local_phase": "L1+LocalPhase"}


def _csv(s: str) -> List[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from stftblur.restoration import LOSSES, RestorationConfig

    d = RestorationConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--losses", default=",".join(LOSSES), help=f"comma-separated subset of {','.join(LOSSES)}")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds")
    p.add_argument("--encoder", default=d.encoder, help="timm model name (features_only, pretrained=False)")
    p.add_argument("--decoder-width", type=int, default=d.decoder_width)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--crop-size", type=int, default=d.crop_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--test-size", type=int, default=d.test_size)
    p.add_argument("--test-crops", type=int, default=d.test_crops_per_photo, help="crops per test photograph")
    p.add_argument("--calibration-crops", type=int, default=d.calibration_crops)
    p.add_argument("--train-photos", default=",".join(d.train_photos))
    p.add_argument("--test-photos", default=",".join(d.test_photos))
    p.add_argument("--weight", action="append", default=[], metavar="LOSS=W", help="fix an auxiliary weight instead of calibrating it")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "restoration")
    p.add_argument("--json", type=Path, default=ROOT / "evals" / "results" / "restoration.json")
    p.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "restoration.png"), help="'' for no figure")
    p.add_argument("--figure-images", default=",".join(FIGURE_IMAGES))
    p.add_argument("--fresh", action="store_true", help="discard the runs already in --json")
    p.add_argument("--report-only", action="store_true", help="train nothing: recompute the summary, figure and table from --json")
    p.add_argument("--log-every", type=int, default=50)
    args = p.parse_args(argv)
    bad = [x for x in _csv(args.losses) if x not in LOSSES]
    if bad:
        p.error(f"--losses: unknown {bad}; choose from {LOSSES}")
    return args


def config_from_args(args: argparse.Namespace):
    from stftblur.restoration import RestorationConfig

    weights: Dict[str, float] = {}
    for item in args.weight:
        name, _, value = item.partition("=")
        weights[name.strip()] = float(value)
    return RestorationConfig(
        encoder=args.encoder,
        decoder_width=args.decoder_width,
        crop_size=args.crop_size,
        batch_size=args.batch_size,
        steps=args.steps,
        lr=args.lr,
        test_size=args.test_size,
        test_crops_per_photo=args.test_crops,
        calibration_crops=args.calibration_crops,
        train_photos=tuple(_csv(args.train_photos)),
        test_photos=tuple(_csv(args.test_photos)),
        weights=weights or None,
    )


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was requested but no CUDA device is available")
    return device


def _mean_std(summary: Dict[str, Any]) -> Dict[str, Dict[str, Optional[float]]]:
    return {m: {"mean": summary[m]["mean"], "std": summary[m]["std"]} for m in METRICS if m in summary}


def _gain(run: Dict[str, Any], blurry: Dict[str, Dict[str, float]], metric: str) -> Dict[str, Optional[float]]:
    """Mean and sample std over test images of (restored - blurry), paired image by image."""
    d = [run["per_image"][n][metric] - blurry[n][metric] for n in sorted(run["per_image"])]
    return {"mean": statistics.fmean(d), "std": statistics.stdev(d) if len(d) > 1 else None}


def aggregate(runs: List[Dict[str, Any]], losses: Sequence[str], blurry: Dict[str, Dict[str, float]]) -> Dict[str, Any]:
    """Per loss: the mean over seeds of each metric's mean over test images, the range of those
    means over seeds, seed 0's std over images, and the paired gain over the blurry input."""
    out: Dict[str, Any] = {}
    for loss in losses:
        rs = sorted((r for r in runs if r["loss"] == loss), key=lambda r: r["seed"])
        if not rs:
            continue
        entry: Dict[str, Any] = {"seeds": [r["seed"] for r in rs], "weight": rs[0]["weight"]}
        for m in METRICS:
            means = [r["metrics"][m]["mean"] for r in rs]
            gains = [_gain(r, blurry, m) for r in rs]
            entry[m] = {
                "mean_over_seeds": statistics.fmean(means),
                "seed_min": min(means),
                "seed_max": max(means),
                "std_over_images_first_seed": rs[0]["metrics"][m]["std"],
                "gain_over_blurry_mean_over_seeds": statistics.fmean(g["mean"] for g in gains),
                "gain_over_blurry_std_over_images_first_seed": gains[0]["std"],
                "gain_over_blurry_per_seed": [g["mean"] for g in gains],
            }
        entry["images_with_higher_psnr_than_blurry_per_seed"] = [
            sum(r["per_image"][n]["psnr"] > blurry[n]["psnr"] for n in r["per_image"]) for r in rs
        ]
        entry["train_seconds"] = [round(r["train_seconds"], 1) for r in rs]
        out[loss] = entry
    return out


def markdown_table(doc: Dict[str, Any]) -> str:
    """The results tables of docs/restoration.md: absolute values, then gains over the blurry input."""
    lines = [
        "| | weight | seeds | PSNR (dB) | SSIM | LPC-SI | train s / run |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (("sharp", "sharp reference"), ("blurry", "blurry input")):
        b = doc["baselines"].get(name)
        if b:
            cells = []
            for m in METRICS:
                s = b["metrics"].get(m)
                digits = ".2f" if m == "psnr" else ".4f"
                cells.append("-" if s is None else f"{s['mean']:{digits}} ± {s['std']:.2g}")
            lines.append(f"| {label} | | | {' | '.join(cells)} | |")
    for loss, e in doc["summary"].items():
        cells = []
        for m in METRICS:
            v = e[m]
            digits = ".2f" if m == "psnr" else ".4f"
            spread = f" [{v['seed_min']:{digits}}, {v['seed_max']:{digits}}]" if len(e["seeds"]) > 1 else ""
            cells.append(f"{v['mean_over_seeds']:{digits}} ± {v['std_over_images_first_seed']:.2g}{spread}")
        w = "" if loss == "l1" else f"{e['weight']:g}"
        secs = "/".join(f"{s:.0f}" for s in e["train_seconds"])
        lines.append(f"| {LOSS_TITLES.get(loss, loss)} | {w} | {','.join(map(str, e['seeds']))} | {' | '.join(cells)} | {secs} |")
    lines += [
        "",
        "| gain over the blurry input | ΔPSNR (dB) | ΔSSIM | ΔLPC-SI | per seed ΔPSNR / ΔSSIM / ΔLPC-SI | images with higher PSNR, per seed |",
        "|---|---|---|---|---|---|",
    ]
    for loss, e in doc["summary"].items():
        cells = []
        for m in METRICS:
            v = e[m]
            digits = "+.2f" if m == "psnr" else "+.4f"
            cells.append(f"{v['gain_over_blurry_mean_over_seeds']:{digits}} ± {v['gain_over_blurry_std_over_images_first_seed']:.2g}")
        per_seed = "; ".join(
            " / ".join(f"{e[m]['gain_over_blurry_per_seed'][i]:{'+.2f' if m == 'psnr' else '+.4f'}}" for m in METRICS)
            for i in range(len(e["seeds"]))
        )
        n_images = len(doc["baselines"]["blurry"]["per_image"])
        better = ", ".join(f"{k}/{n_images}" for k in e["images_with_higher_psnr_than_blurry_per_seed"])
        lines.append(f"| {LOSS_TITLES.get(loss, loss)} | {' | '.join(cells)} | {per_seed} | {better} |")
    terms = ("l1", "ssim", "ffl", "local_phase")
    lines += [
        "",
        "| loss terms on the test images (mean over seeds) | L1 | SSIMLoss | FFL | LocalPhaseLoss |",
        "|---|---|---|---|---|",
    ]
    blurry_terms = doc["baselines"]["blurry"].get("loss_terms")
    if blurry_terms:
        lines.append("| blurry input | " + " | ".join(f"{blurry_terms[t]:.4g}" for t in terms) + " |")
    for loss in doc["summary"]:
        rs = [r["loss_terms"] for r in doc["runs"] if r["loss"] == loss and "loss_terms" in r]
        if rs:
            lines.append(f"| {LOSS_TITLES.get(loss, loss)} | " + " | ".join(f"{statistics.fmean(r[t] for r in rs):.4g}" for t in terms) + " |")
    return "\n".join(lines)


def loss_terms_on_test(folder: Path, sharp_dir: Path, names: Sequence[str]) -> Dict[str, float]:
    """Each training loss term (unweighted) between the PNG files of ``folder`` and the sharp ones."""
    import numpy as np

    from stftblur import LocalPhaseLoss
    from stftblur.evaluate import read_image
    from stftblur.restoration import LOSSES, aux_loss

    x = torch.from_numpy(np.stack([read_image(folder / n) for n in names]))
    y = torch.from_numpy(np.stack([read_image(sharp_dir / n) for n in names]))
    out = {"l1": float(torch.nn.functional.l1_loss(x, y))}
    for loss in LOSSES[1:]:
        out[loss.removeprefix("l1_")] = float(aux_loss(loss)(x, y))
    # The two parts of LocalPhaseLoss (default weights 3 : 1), which add up to its value.
    out["local_phase_phase_part"] = float(LocalPhaseLoss(amplitude_weight=0.0)(x, y))
    out["local_phase_amplitude_part"] = float(LocalPhaseLoss(phase_weight=0.0)(x, y))
    return out


def draw_figure(doc: Dict[str, Any], out_dir: Path, path: Path, images: Sequence[str]) -> Optional[Path]:
    from stftblur.restoration import plot_before_after

    runs = doc["runs"]
    seed = min((r["seed"] for r in runs), default=None)
    columns = [("sharp", out_dir / "sharp"), ("blurry", out_dir / "blurry")]
    values: Dict[str, Dict[str, Dict[str, float]]] = {}
    blurry = doc["baselines"]["blurry"]["per_image"]
    values["blurry"] = {n: {"PSNR": v["psnr"], "LPC-SI": v["lpc_si"]} for n, v in blurry.items()}
    sharp = doc["baselines"]["sharp"]["per_image"]
    values["sharp"] = {n: {"LPC-SI": v["lpc_si"]} for n, v in sharp.items()}
    for loss in LOSS_TITLES:
        run = next((r for r in runs if r["loss"] == loss and r["seed"] == seed), None)
        folder = out_dir / loss / f"seed{seed}"
        if run is None or not folder.is_dir():
            continue
        title = f"{LOSS_TITLES[loss]} (seed {seed})"
        columns.append((title, folder))
        values[title] = {n: {"PSNR": v["psnr"], "LPC-SI": v["lpc_si"]} for n, v in run["per_image"].items()}
    rows = [n for n in images if (out_dir / "sharp" / n).exists()]
    if not rows:
        return None
    ts = doc["test_set"]
    labels = [f"{n.rsplit('.', 1)[0]}\nsigma {ts[n]['sigma']:.2f}, noise {ts[n]['noise_std']:.3f}" for n in rows]
    return plot_before_after(rows, columns, path, values=values, row_labels=labels)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    from stftblur import __version__
    from stftblur.restoration import (
        AUX_TERMS,
        calibrate_weights,
        gradient_ratios,
        evaluate_restored,
        make_test_set,
        restore,
        train_restoration,
        write_pngs,
    )

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    config = config_from_args(args)
    losses, seeds = ([] if args.report_only else _csv(args.losses)), [int(s) for s in _csv(args.seeds)]
    command = "python " + " ".join(shlex.quote(a) for a in ([str(Path(__file__).relative_to(ROOT)) if Path(__file__).is_relative_to(ROOT) else __file__] + list(sys.argv[1:] if argv is None else argv)))

    doc: Dict[str, Any] = {}
    if args.json.exists() and not args.fresh:
        doc = json.loads(args.json.read_text())
        if doc.get("config") != config.to_dict():
            raise SystemExit(
                f"{args.json} holds runs of another configuration; pass --fresh to replace them or --json for another file\n"
                f"  theirs: {doc.get('config')}\n  yours:  {config.to_dict()}"
            )
    weights = calibrate_weights(config)
    if doc and doc.get("weights") != weights:
        raise SystemExit(f"calibrated weights {weights} differ from those in {args.json} ({doc.get('weights')})")

    test = make_test_set(config)
    out_dir: Path = args.out_dir
    sharp_dir = write_pngs(test.sharp, out_dir / "sharp", test.names)
    blurry_dir = write_pngs(test.blurry, out_dir / "blurry", test.names)
    baselines = {
        "blurry": evaluate_restored(blurry_dir, sharp_dir, device),
        "sharp": evaluate_restored(sharp_dir, None, device),
    }
    doc = {
        "benchmark": "restoration (deblurring)",
        "stftblur_version": __version__,
        "config": config.to_dict(),
        "weights": weights,
        "weight_rule": "L1(degraded, sharp) / aux(degraded, sharp) on calibration crops of the training photographs, 2 significant digits",
        "aux_terms": {k: v for k, v in AUX_TERMS.items()},
        "gradient_ratio_at_start": gradient_ratios(config, weights),
        "test_set": test.describe(),
        "baselines": {k: {"metrics": _mean_std(v["summary"]), "summary": v["summary"], "per_image": v["per_image"]} for k, v in baselines.items()},
        "runs": [r for r in doc.get("runs", []) if not (r["loss"] in losses and r["seed"] in seeds)],
    }
    for loss in losses:
        for seed in seeds:
            weight = weights.get(loss, 0.0)
            print(f"[{loss} seed {seed}] weight {weight:g}, {config.steps} steps on {device}", flush=True)
            result = train_restoration(
                config, loss, seed, weight, device, log_every=args.log_every,
                progress=lambda rec: print("  " + "  ".join(f"{k} {v:.4g}" for k, v in rec.items()), flush=True),
            )
            folder = write_pngs(restore(result.model, test.blurry), out_dir / loss / f"seed{seed}", test.names)
            ev = evaluate_restored(folder, sharp_dir, device)
            run = {
                "loss": loss,
                "seed": seed,
                "weight": result.weight,
                "train_seconds": result.seconds,
                "history": result.history,
                "metrics": _mean_std(ev["summary"]),
                "summary": ev["summary"],
                "per_image": ev["per_image"],
                "command": command,
                "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                "machine": describe(device),
            }
            doc["runs"].append(run)
            m = run["metrics"]
            print(
                f"  -> PSNR {m['psnr']['mean']:.3f}  SSIM {m['ssim']['mean']:.4f}  LPC-SI {m['lpc_si']['mean']:.4f}  "
                f"({result.seconds:.0f} s training)", flush=True,
            )
    doc["runs"].sort(key=lambda r: (list(LOSS_TITLES).index(r["loss"]) if r["loss"] in LOSS_TITLES else 99, r["seed"]))
    names = sorted(doc["test_set"])
    doc["baselines"]["blurry"]["loss_terms"] = loss_terms_on_test(blurry_dir, sharp_dir, names)
    for run in doc["runs"]:
        folder = out_dir / run["loss"] / f"seed{run['seed']}"
        if folder.is_dir():
            run["loss_terms"] = loss_terms_on_test(folder, sharp_dir, names)
    doc["summary"] = aggregate(doc["runs"], list(LOSS_TITLES), doc["baselines"]["blurry"]["per_image"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.json}")
    if args.figure:
        fig = draw_figure(doc, out_dir, Path(args.figure), _csv(args.figure_images))
        if fig is not None:
            print(f"wrote {fig}")
    print()
    print(markdown_table(doc))
    return doc


if __name__ == "__main__":
    main()
