"""How often the DDP example's processes abort at exit, with and without its early exit.

    python evals/ddp_teardown.py --runs 200 --out evals/results/ddp_teardown.json
    python evals/ddp_teardown.py --runs 200 --finalize --out evals/results/ddp_teardown.json

Each run is the command of ``tests/test_integrations.py``: ``torchrun --standalone
--nproc_per_node 2`` of ``examples/ddp_local_phase.py --check`` on the CPU (gloo), with
``OMP_NUM_THREADS=1``. Each worker is this file (``--worker``), which loads the example and calls
its ``run`` (the example as shipped: ``main`` then ``os._exit``) or, with ``--finalize``, only
its ``main``, so that the process ends through normal interpreter shutdown. A run fails when
torchrun's exit status is not 0. The count of failures is printed (and written with ``--out``,
merged under the key ``as_shipped`` or ``finalize``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ddp_local_phase.py"
EXAMPLE_ARGS = ["--check", "--device", "cpu", "--steps", "2", "--size", "32", "--global-batch", "4"]


def _worker(finalize: bool, argv: List[str]) -> None:
    spec = importlib.util.spec_from_file_location("ddp_local_phase", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    if finalize:
        example.main(argv)  # returns; the interpreter then shuts down as usual
    else:
        example.run(argv)


def _one_run(finalize: bool, out_json: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), "--worker"] + (["--finalize"] if finalize else [])
    cmd += ["--"] + EXAMPLE_ARGS + ["--out", str(out_json)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=200, help="torchrun launches (the results file has 200 of each)")
    p.add_argument("--finalize", action="store_true", help="end the workers through interpreter shutdown")
    p.add_argument("--out", type=Path, help="JSON file to merge the count into")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("example_args", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args.finalize, args.example_args)
        return {}
    if args.runs < 1:
        p.error(f"--runs must be at least 1, got {args.runs}")

    failures, aborts = 0, 0
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.runs):
            proc = _one_run(args.finalize, Path(scratch) / "grads.json")
            if proc.returncode != 0:
                failures += 1
                aborts += "terminate called without an active exception" in proc.stderr + proc.stdout
            print(f"run {i + 1}/{args.runs}: exit {proc.returncode}", flush=True)
    key = "finalize" if args.finalize else "as_shipped"
    record = {"runs": args.runs, "failures": failures, "aborts_terminate_called": aborts}
    print(f"{key}: {failures} of {args.runs} runs failed ({aborts} with 'terminate called without an active exception')")
    if args.out is not None:
        data = json.loads(args.out.read_text()) if args.out.exists() else {}
        data[key] = record
        data["command"] = "python evals/ddp_teardown.py --runs N [--finalize] --out evals/results/ddp_teardown.json"
        args.out.write_text(json.dumps(data, indent=2) + "\n")
    return record


if __name__ == "__main__":
    main()
