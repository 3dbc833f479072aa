"""How strongly each frequency-term preset pulls on the decoder output, next to the SSIM term.

    python evals/freq_weight_scale.py

For the authors' released checkpoints (../shared/reference/author_vae) and 500 MNIST test images
(binarized; z sampled with seed 0), this measures the value and the gradient norm (with respect
to the raw decoder output) of ``-500 * SSIM`` and of ``freq_weight * LocalPhaseLoss`` for the
"paper-code", "paper-text" and "default" presets at their default freq_weight
(stftblur.training.DEFAULT_FREQ_WEIGHTS). It is the measurement behind the default weight of the
"default" preset (chosen so that its gradient share is in the range of the paper-code term's).
Writes evals/results/freq_weight_scale.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict

import torch

ROOT = Path(__file__).resolve().parents[1]

from stftblur.data import load_dataset  # noqa: E402
from stftblur.losses import LocalPhaseLoss  # noqa: E402
from stftblur.metrics import ssim  # noqa: E402
from stftblur.models import load_author_checkpoint  # noqa: E402
from stftblur.training import DEFAULT_FREQ_WEIGHTS  # noqa: E402


def main() -> None:
    shared = Path(os.environ.get("STFTBLUR_SHARED", ROOT.parent / "shared"))
    x = load_dataset("mnist", "test", shared / "data" / "mnist").images[:500]
    results: Dict[str, Any] = {}
    for ckpt in ("l2", "ssim", "ours"):
        model = load_author_checkpoint(shared / "reference" / "author_vae" / f"{ckpt}.npz")
        with torch.no_grad():
            recon = model(x, generator=torch.Generator().manual_seed(0)).recon
        terms = {"ssim (x500)": (lambda r: -ssim(r, x).mean(), 500.0)}
        for preset, weight in DEFAULT_FREQ_WEIGHTS.items():
            terms[f"{preset} (x{weight})"] = (lambda r, p=preset: LocalPhaseLoss.from_preset(p)(r, x), weight)
        rows = {}
        for name, (fn, weight) in terms.items():
            r = recon.clone().requires_grad_()
            value = fn(r)
            value.backward()
            rows[name] = {"value": weight * float(value), "grad_norm": weight * float(r.grad.norm())}
        ssim_grad = rows["ssim (x500)"]["grad_norm"]
        for row in rows.values():
            row["grad_share_of_ssim"] = row["grad_norm"] / ssim_grad
        results[ckpt] = rows
        print(ckpt, json.dumps(rows, indent=1))
    out = ROOT / "evals" / "results" / "freq_weight_scale.json"
    out.write_text(json.dumps({"command": "python evals/freq_weight_scale.py", "images": 500,
                               "results": results}, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
