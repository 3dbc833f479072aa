"""Accuracy of stftblur.lpc_si against the reference implementation's values.

Usage:
    .venv/bin/python evals/lpc_si_reference.py [--shared ../shared] [--out FILE]

Reads ``reference/lpc_si/public_images.npz`` (grayscale images in 0..255) and
``public_expected.json`` (the values of the authors' MATLAB ``lpc_si.m`` with its defaults, in
float64) from the shared folder, computes lpc_si in float64 and float32 (``data_range=255``) on
the CPU, and writes the per-image differences to evals/results/lpc_si_reference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stftblur import __version__, lpc_si  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("STFTBLUR_SHARED", ROOT.parent / "shared")))
    parser.add_argument("--out", type=Path, default=ROOT / "evals" / "results" / "lpc_si_reference.json")
    args = parser.parse_args()
    folder = args.shared / "reference" / "lpc_si"
    expected = json.loads((folder / "public_expected.json").read_text())
    images = np.load(folder / "public_images.npz")
    rows = []
    for key, value in expected.items():
        x = torch.from_numpy(images[key])[None, None]
        row = {"image": key, "size": list(images[key].shape), "expected": value}
        for dtype in (torch.float64, torch.float32):
            got = lpc_si(x.to(dtype), data_range=255.0).item()
            row[str(dtype).replace("torch.", "")] = got
            row[f"abs_error_{str(dtype).replace('torch.', '')}"] = abs(got - value)
        rows.append(row)
        print(f"{key:10s} {str(row['size']):11s} expected {value:.10f}  float64 {row['float64']:.10f} "
              f"(|d| {row['abs_error_float64']:.1e})  float32 {row['float32']:.10f} (|d| {row['abs_error_float32']:.1e})")
    result = {
        "command": "python evals/lpc_si_reference.py " + " ".join(sys.argv[1:]),
        "stftblur": __version__,
        "torch": torch.__version__,
        "note": "expected values are given to 10 decimals, so differences below 5e-11 are rounding of the fixture",
        "max_abs_error_float64": max(r["abs_error_float64"] for r in rows),
        "max_abs_error_float32": max(r["abs_error_float32"] for r in rows),
        "images": rows,
    }
    print(f"max |error|: float64 {result['max_abs_error_float64']:.1e}, float32 {result['max_abs_error_float32']:.1e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
