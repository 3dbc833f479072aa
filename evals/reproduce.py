"""Reproduction of the paper's Table 1 and the ablations: a resumable queue of train-vae runs.

    python evals/reproduce.py --list                      # every run, its state and its command
    python evals/reproduce.py [--only GLOB] [--threads N] [--jobs J]
                                                          # run what is not complete, in order,
                                                          # J runs at a time (default 2)
    python evals/reproduce.py --queue fashion ...         # the Fashion-MNIST study (issue #23)

Each run lives in evals/runs/<name>/ (a `stftblur train-vae` run directory; its config, metrics
log, summary and weights are committed, and while it is unfinished its resumable train_state.pt, so
that a later session continues it; a finished run's train_state.pt (optimizer state, ~0.85 MB) is
not, nor are its log evals/runs/<name>.log and image exports). A run being trained holds
evals/runs/<name>.lock (the pid of its queue), so two queues never train the same run. A run with summary.json is complete and skipped; a run with a
config.json but no summary.json is continued with --resume (exactly: the trainer restores the
optimizer, scheduler and RNG state of its last checkpoint), so the queue can be killed at any
time and started again. `evals/table1.py` turns the finished runs into evals/results/table1.json
and docs/reproduction.md.

Protocols: "full" is the paper's (50 epochs, batch 50, cyclical LR 1e-4..1e-3 with step size
2000, triangular2); "short" is the same for 10 epochs (12,000 steps, three LR half-cycles
halving), used for seed spreads and ablations.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "evals" / "runs"

# The Table 1 losses with the authors' coefficients (train-vae's defaults), plus ffl and this
# project's LocalPhaseLoss defaults (2-D STFT, periodic Hann, wrapped phase, radial weighting).
LOSSES: Dict[str, List[str]] = {
    "l2": ["--loss", "l2"],
    "l1": ["--loss", "l1"],
    "ssim": ["--loss", "ssim"],
    "dft+ssim": ["--loss", "dft+ssim"],
    "ours": ["--loss", "ours", "--preset", "paper-code"],
    "ffl": ["--loss", "ffl"],
    "lpl": ["--loss", "ours", "--preset", "default"],
    # Not Table 1 rows: the released checkpoints' apparent settings (docs/loss-design.md, "The
    # VAE"): the KL summed over a batch of 50 (beta 0.25 per image) and, for L2, the squared error
    # summed over the 784 pixels. l2-released tests at the full protocol why the L2 row differs
    # from the release; ssim-released and ours-released ask the paper's question (does its loss
    # beat SSIM alone?) with codes that carry what the released ones carry, over three seeds.
    "l2-released": ["--loss", "l2", "--beta", "0.25", "--pixel-weight", "784"],
    "ssim-released": ["--loss", "ssim", "--beta", "0.25"],
    "ours-released": ["--loss", "ours", "--preset", "paper-code", "--beta", "0.25"],
}

# The loss-design study in the VAE (docs/loss-design.md): variants of the project's configuration
# (short protocol, 3 seeds each), after the Table 1 runs. Each is compared with short-lpl-s*.
ABLATIONS: Dict[str, List[str]] = {
    "freqw1": ["--freq-weight", "1"],        # relative weight of the frequency term: 1/5 ...
    "freqw25": ["--freq-weight", "25"],      # ... and 5x the default 5.0
    "lambda1": ["--phase-weight", "1"],      # phase weight lambda (default 3)
    "lambda9": ["--phase-weight", "9"],
    "w8s2": ["--window-size", "8", "--stride", "2"],   # window size (default 16, stride 4)
    "w28s4": ["--window-size", "28", "--stride", "4"],
    "cosine": ["--phase-distance", "cosine"],           # phase distance (default wrapped)
    "product": ["--frequency-weighting", "product"],    # frequency weighting (default linear) ...
}
# The VAE study's confirmation, fixed before any variant's third seed was measured: the variant
# of ABLATIONS with the largest mean PSNR gain over SSIM alone on seeds 0-2 (sampled z), and SSIM
# alone, each on the fresh seeds CONFIRMATION_SEEDS, which alone enter its test (evals/table1.py).
# CONFIRM_VARIANT is filled in by that rule once the seeds 0-2 are measured.
CONFIRM_VARIANT: str = "lambda9"  # by the rule: +0.107 dB over SSIM on seeds 0-2 (next: freqw25, +0.066)
CONFIRMATION_SEEDS = (3, 4, 5)
# The confirmation was borderline (lambda9 - SSIM alone on seeds 3-5: PSNR +0.106 [-0.001,
# +0.214], SSIM +0.0088 [+0.0025, +0.0151], neither after a Bonferroni correction over its four
# metrics). A replication, fixed before it ran, tests the hypothesis those seeds raised on
# seeds no earlier test has seen: primary endpoint SSIM (sampled z), lambda9 - SSIM alone, one
# 95% Welch test over REPLICATION_SEEDS; PSNR and the rest are reported beside it, secondary.
REPLICATION_SEEDS = (6, 7, 8, 9, 10)
# The replication's primary endpoint did not hold (SSIM -0.0009 [-0.0084, +0.0066] over seeds
# 6-10), so the study closes negative on PSNR, SSIM and LPC-SI. One secondary moved on both
# fresh sets: lambda9's prior samples lack less high-frequency power than SSIM alone's (spectral
# deficit -0.98 dB [-1.94, -0.01] on seeds 3-5, -0.55 [-1.02, -0.08] on 6-10; +0.06 on 0-2).
# A secondary found on seeds that were looked at is a hypothesis, not a result: a follow-up,
# fixed before it ran, tests it on seeds no earlier test has seen. Primary endpoint the spectral
# deficit of prior samples (dB), lambda9 - SSIM alone, one 95% Welch test over DEFICIT_SEEDS.
DEFICIT_SEEDS = (11, 12, 13, 14, 15)  # result: -0.63 dB [-1.42, +0.16], not confirmed (docs/loss-design.md)

# Added once the first eight had run (the issue also names normalisation): queued after them.
MORE_ABLATIONS: Dict[str, List[str]] = {
    "fwnone": ["--frequency-weighting", "none"],        # ... or none: every frequency alike
    "unnorm": ["--no-normalized"],                      # amplitudes summed over the window
}


# The Fashion-MNIST study (issue #23; docs/fashion.md): the paper's VAE on Debian's
# dataset-fashion-mnist, grayscale (not binarized), short protocol, seeds FASHION_SEEDS, at the
# released checkpoints' KL setting (beta 0.25) and the paper code's (beta 0.005).
FASHION_SEEDS = (0, 1, 2)
FASHION_DATA = ["--dataset", "fashion-mnist", "--grayscale"]
FASHION_LOSSES: Dict[str, List[str]] = {
    # beta 0.25 (and --pixel-weight 784 for L2): the setting at which the SSIM family draws
    # recognisable garments in the probe; the primary comparison lives here.
    "ssim-released": LOSSES["ssim-released"],
    "lpl-released": LOSSES["lpl"] + ["--beta", "0.25"],
    "ours-released": LOSSES["ours-released"],
    "l2-released": LOSSES["l2-released"],
    # beta 0.005, the paper code's setting.
    "l2": LOSSES["l2"],
    "ssim": LOSSES["ssim"],
    "lpl": LOSSES["lpl"],
    "ours": LOSSES["ours"],
    "ffl": LOSSES["ffl"],
}
# Fixed before the first Fashion-MNIST run (issue #23): the primary endpoint is the test-set SSIM
# (sampled z) of SSIM + LocalPhaseLoss() (lpl) minus SSIM alone, at beta 0.25, one 95% Welch
# interval over FASHION_SEEDS. The loss helps only if that interval lies above 0. Beta 0.25 is the
# verdict's setting because, in the probe, it is where the SSIM family draws meaningful
# prior samples; if the finished runs' sample figure shows otherwise, the study says so and gives
# no verdict instead of moving to the other setting. PSNR, LPC-SI, the spectral deficit, "ours"
# and everything at beta 0.005 are secondary.
FASHION_PRIMARY = {"config": "lpl-released", "baseline": "ssim-released", "metric": "ssim", "seeds": FASHION_SEEDS}


def fashion_queue() -> List[Dict[str, object]]:
    """The Fashion-MNIST runs: the primary comparison's two arms at every seed, then the rest seed-major."""
    primary = (str(FASHION_PRIMARY["baseline"]), str(FASHION_PRIMARY["config"]))
    order = [(loss, seed) for seed in FASHION_SEEDS for loss in primary]
    order += [(loss, seed) for seed in FASHION_SEEDS for loss in FASHION_LOSSES if loss not in primary]
    return [{"name": f"fm-{loss}-s{seed}",
             "args": FASHION_DATA + FASHION_LOSSES[loss] + ["--epochs", "10", "--seed", str(seed)]}
            for loss, seed in order]


def queue() -> List[Dict[str, object]]:
    """Every run, in the order they are worth having."""
    runs: List[Dict[str, object]] = []

    def add(name: str, args: List[str], epochs: int, seed: int) -> None:
        runs.append({"name": name, "args": args + ["--epochs", str(epochs), "--seed", str(seed)]})

    # 1. The full protocol for the rows the targets are about and the plain baseline.
    for loss in ("ours", "ssim", "lpl", "l2"):
        add(f"full-{loss}-s0", LOSSES[loss], 50, 0)
    # 2. Seed spread at the short protocol: the comparisons of Table 1 rest on it, and a short
    #    run costs a fifth of a full one, so two seeds of every row come before the last full runs.
    rows = ("ssim", "lpl", "ours", "l2", "dft+ssim", "l1", "ffl")
    for seed in (0, 1):
        for loss in rows:
            add(f"short-{loss}-s{seed}", LOSSES[loss], 10, seed)
    # 3. The remaining full-protocol rows, longest first (ffl's loss is the slowest per step), so
    #    that two parallel slots finish the table soonest, then the third seed of every row.
    for loss in ("ffl", "dft+ssim", "l1"):
        add(f"full-{loss}-s0", LOSSES[loss], 50, 0)
    for loss in rows:
        add(f"short-{loss}-s2", LOSSES[loss], 10, 2)
    # 3b. The released checkpoints' apparent settings: L2 at the full protocol, then the paper's
    #     comparison (ours against SSIM alone) at the short one.
    add("full-l2-released-s0", LOSSES["l2-released"], 50, 0)
    for seed in (0, 1, 2):
        for loss in ("ssim-released", "ours-released"):
            add(f"short-{loss}-s{seed}", LOSSES[loss], 10, seed)
    # 4. The loss-design study, seed-major so that every variant has a seed before any has three.
    def study(variants: Dict[str, List[str]]) -> None:
        for seed in (0, 1, 2):
            for name, extra in variants.items():
                add(f"abl-{name}-s{seed}", LOSSES["lpl"] + extra, 10, seed)

    study(ABLATIONS)
    # 5. The confirmation of the study's best variant on fresh seeds (see CONFIRM_VARIANT): SSIM
    #    alone's fresh seeds do not depend on which variant it is.
    def fresh(prefix: str, seeds: Tuple[int, ...]) -> None:
        for seed in seeds:
            add(f"{prefix}-ssim-s{seed}", LOSSES["ssim"], 10, seed)
            if CONFIRM_VARIANT:
                add(f"{prefix}-{CONFIRM_VARIANT}-s{seed}", LOSSES["lpl"] + ABLATIONS[CONFIRM_VARIANT], 10, seed)

    fresh("conf", CONFIRMATION_SEEDS)
    # 6. Its replication on further fresh seeds (see REPLICATION_SEEDS), then the later
    #    variants' seeds 1 and 2 (their seed 0 began before the replication was queued).
    fresh("rep", REPLICATION_SEEDS)
    study(MORE_ABLATIONS)
    # 7. The follow-up on the spectral deficit (see DEFICIT_SEEDS).
    fresh("dfc", DEFICIT_SEEDS)
    return runs


def state(name: str) -> str:
    d = RUNS / name
    if (d / "summary.json").exists():
        return "complete"
    if (d / "config.json").exists():
        return "partial"
    return "todo"


def progress(name: str) -> str:
    """'  (epoch E of N)' for a partial run, from the last record of its metrics log; '' otherwise."""
    d = RUNS / name
    if state(name) != "partial" or not (d / "metrics.jsonl").exists():
        return ""
    epochs = json.loads((d / "config.json").read_text())["config"]["epochs"]
    lines = (d / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1]) if lines else {}
    return f"  (epoch {last.get('epoch', 0)} of {epochs})"


def pending_runs(runs: List[Dict[str, object]], skip_partial: bool = False) -> List[Dict[str, object]]:
    """The runs still to train, in queue order: not begun, and (unless ``skip_partial``) begun."""
    wanted = ("todo",) if skip_partial else ("todo", "partial")
    return [r for r in runs if state(str(r["name"])) in wanted]


def command(run: Dict[str, object], threads: int) -> List[str]:
    name = str(run["name"])
    cmd = [sys.executable, "-m", "stftblur_cli", "train-vae", "--out", str(RUNS / name), "--no-progress",
           "--threads", str(threads)] + list(run["args"])  # type: ignore[arg-type]
    if state(name) == "partial":
        cmd.append("--resume")
    return cmd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="show the runs and their state, run nothing")
    ap.add_argument("--queue", default="table1", choices=["table1", "fashion"],
                    help="table1 (MNIST, default) or fashion (the Fashion-MNIST study)")
    ap.add_argument("--only", default="*", help="glob on run names, e.g. 'full-*' or 'short-*-s1'")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at the same time (default 2)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--skip-partial", action="store_true",
                    help="start only runs not begun yet (a run is continued on the device it started on)")
    args = ap.parse_args()
    RUNS.mkdir(parents=True, exist_ok=True)
    runs = [r for r in (fashion_queue() if args.queue == "fashion" else queue())
            if fnmatch.fnmatch(str(r["name"]), args.only)]
    if args.list:
        for r in runs:
            name = str(r["name"])
            print(f"{state(name):9s} {name:28s} {' '.join(map(str, r['args']))}{progress(name)}")
        return 0
    pending = pending_runs(runs, args.skip_partial)
    running: Dict[str, subprocess.Popen] = {}
    failed = 0
    while pending or running:
        while pending and not failed and len(running) < args.jobs:
            r = pending.pop(0)
            name = str(r["name"])
            if state(name) == "complete" or not _claim(name):
                continue
            cmd = command(r, args.threads) + ["--device", args.device]
            print(f"[reproduce] {name}: {' '.join(cmd[2:])}", flush=True)
            with open(RUNS / f"{name}.log", "a") as log:
                running[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        if not running:
            break
        pid, status = os.wait()
        for name, proc in list(running.items()):
            if proc.pid == pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                del running[name]
                _release(name)
                if proc.returncode != 0:
                    failed = proc.returncode
                    print(f"[reproduce] {name} failed with exit code {proc.returncode}; "
                          f"see {RUNS / (name + '.log')}", flush=True)
                else:
                    if state(name) == "complete":  # a finished run keeps no optimizer state (see above)
                        (RUNS / name / "train_state.pt").unlink(missing_ok=True)
                    print(f"[reproduce] {name}: {state(name)}", flush=True)
    return failed


def _lock(name: str) -> Path:
    return RUNS / f"{name}.lock"


def _claim(name: str) -> bool:
    """Take the run's lock; a lock left by a dead process is taken over."""
    path = _lock(name)
    try:
        pid = int(path.read_text().strip() or 0)
        os.kill(pid, 0)
        print(f"[reproduce] {name}: trained by process {pid}, skipped", flush=True)
        return False
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass
    path.write_text(str(os.getpid()))
    return True


def _release(name: str) -> None:
    _lock(name).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
