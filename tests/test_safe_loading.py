"""train_state.pt is read without running code from it (issue #24).

The library reads it with ``torch.load(weights_only=True)`` only. The reference here is PyTorch's
own restricted loader with the one legacy type of older files allowlisted through
``torch.serialization.safe_globals``: that context manager changes a process-wide set while it is
open, which a test may do and the library never does.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any, List

import pytest
import torch
from safetensors.torch import load_file
from torch.torch_version import TorchVersion

from stftblur.models import create_vae
from stftblur.training import RunDirError, load_run_config, make_optimizer, train_vae
from stftblur.training.run_dir import STATE_FILE, TrainingState, restore_checkpoint, save_checkpoint

from ._vae_support import one_thread  # noqa: F401 (fixture)
from .conftest import ROOT, require_shared

FIXTURE = Path(__file__).resolve().parent / "data" / "resume_v0"


def _reference_load(path: Path) -> Any:
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _old_format_runs() -> List[Path]:
    """The committed fixture and every run folder of evals/runs that holds a train_state.pt."""
    return [FIXTURE / "stopped"] + sorted(p.parent for p in (ROOT / "evals" / "runs").glob(f"*/{STATE_FILE}"))


def _fresh_state(run: Path) -> TrainingState:
    config = load_run_config(run)
    model = create_vae(config.model)
    opt, sched = make_optimizer(model, config)
    return TrainingState(model, opt, sched, torch.Generator(), torch.Generator())


@pytest.mark.parametrize("run", _old_format_runs(), ids=lambda p: p.name)
def test_old_format_checkpoints_restore_exactly(run: Path) -> None:
    """Model, Adam state, scheduler, both generators, position and loss window restored by the
    library are bit for bit what PyTorch's loader reads from the file."""
    raw = _reference_load(run / STATE_FILE)
    state = _fresh_state(run)
    assert restore_checkpoint(run, state) == raw["metrics_offset"]
    assert (state.epoch, state.batch_in_epoch, state.step) == (raw["epoch"], raw["batch_in_epoch"], raw["step"])
    assert json.loads((run / "model.json").read_text())["step"] == raw["step"]
    model = state.model.state_dict()
    assert model.keys() == raw["model"].keys()
    for k, v in model.items():
        assert v.dtype == raw["model"][k].dtype and torch.equal(v, raw["model"][k]), (run.name, k)
    restored, stored = state.optimizer.state_dict(), raw["optimizer"]
    assert restored["param_groups"] == stored["param_groups"]
    assert restored["state"].keys() == stored["state"].keys()
    for i, s in stored["state"].items():
        for k, v in s.items():
            assert torch.equal(torch.as_tensor(restored["state"][i][k]), torch.as_tensor(v)), (run.name, i, k)
    assert state.scheduler.state_dict() == raw["scheduler"]
    assert torch.equal(state.data_generator.get_state(), raw["data_generator"])
    assert torch.equal(state.noise_generator.get_state(), raw["noise_generator"])
    window = raw.get("log_window", {"sums": {}, "count": 0})  # absent in the oldest checkpoints
    assert state.window.count == window["count"] and state.window.sums.keys() == window["sums"].keys()
    for k, v in window["sums"].items():
        assert torch.equal(state.window.sums[k], v)


def test_a_new_checkpoint_loads_with_plain_weights_only(tmp_path: Path) -> None:
    """What save_checkpoint writes needs no allowlisted type at all."""
    model = create_vae()
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.CyclicLR(opt, 1e-4, 1e-3, step_size_up=10, mode="triangular2", cycle_momentum=False)
    opt.zero_grad()
    model(torch.rand(2, 1, 28, 28)).recon.sum().backward()
    opt.step()
    sched.step()
    save_checkpoint(tmp_path, TrainingState(model, opt, sched, torch.Generator(), torch.Generator(), step=1), 0)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / STATE_FILE) == []
    raw = torch.load(tmp_path / STATE_FILE, map_location="cpu", weights_only=True)
    assert type(raw["torch_version"]) is str and raw["step"] == 1


def _convert_to_new_format(path: Path) -> None:
    raw = _reference_load(path)
    raw["torch_version"] = str(raw["torch_version"])
    torch.save(raw, path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []


@pytest.mark.usefixtures("one_thread")
def test_an_old_format_run_resumes_bit_identically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture's stopped run, resumed from its old-format train_state.pt, ends bit for bit where
    the same run resumed from that state saved in the new format ends (both on this machine)."""
    monkeypatch.setenv("STFTBLUR_DATA", str(require_shared("data", "mnist")))
    runs = {}
    for name in ("old", "new"):
        out = tmp_path / name
        shutil.copytree(FIXTURE / "stopped", out)
        if name == "new":
            _convert_to_new_format(out / STATE_FILE)
        result = train_vae(dataclasses.replace(load_run_config(out), max_steps=None), out, resume=True)
        assert result.resumed_from_step == 5 and result.step == 8
        runs[name] = out
    old, new = load_file(str(runs["old"] / "model.safetensors")), load_file(str(runs["new"] / "model.safetensors"))
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
    assert (runs["old"] / "metrics.jsonl").read_bytes() == (runs["new"] / "metrics.jsonl").read_bytes()
    summaries = [json.loads((runs[n] / "summary.json").read_text()) for n in ("old", "new")]
    assert summaries[0]["metrics"] == summaries[1]["metrics"]
    # What the resumed run wrote is in the new format.
    assert torch.serialization.get_unsafe_globals_in_checkpoint(runs["old"] / STATE_FILE) == []


# --------------------------------------------------------------------------- malicious files


class _Payload:
    """Unpickling this calls ``call(*args)``."""

    def __init__(self, call: Any, *args: Any) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> Any:
        return self.call, self.args


def _payloads(marker: Path) -> dict:
    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "exec": _Payload(exec, f"open({str(marker)!r}, 'w').write('ran')"),
        "pathlib": _Payload(Path.write_text, marker, "ran"),
    }


def _write_run(tmp_path: Path) -> Path:
    """A copy of the fixture's stopped run (config.json, weights, a valid train_state.pt)."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURE / "stopped", run)
    return run


def _refused(run: Path, marker: Path) -> str:
    state = _fresh_state(run)
    before = {k: v.clone() for k, v in state.model.state_dict().items()}
    with pytest.raises(RunDirError) as e:
        restore_checkpoint(run, state)
    assert not marker.exists(), "the payload ran"
    assert str(run / STATE_FILE) in str(e.value)
    assert state.step == 0 and all(torch.equal(v, before[k]) for k, v in state.model.state_dict().items())
    return str(e.value)


@pytest.mark.parametrize("kind", ["os.system", "exec", "pathlib"])
def test_a_checkpoint_with_a_payload_is_refused(kind: str, tmp_path: Path) -> None:
    run = _write_run(tmp_path)
    marker = tmp_path / "payload-ran"
    raw = _reference_load(run / STATE_FILE)
    raw["scheduler"] = {"lr_lambdas": [_payloads(marker)[kind]]}
    torch.save(raw, run / STATE_FILE)
    message = _refused(run, marker)
    assert message.startswith("refusing to load") and "weights_only=True" in message
    # The payload is live: what unpickling it would call does write the marker.
    call, args = _payloads(marker)[kind].__reduce__()
    call(*args)
    assert marker.exists()


def test_a_payload_beside_the_legacy_version_is_refused(tmp_path: Path) -> None:
    """An old-format file (its TorchVersion read as a string) with a payload added is still refused."""
    run = _write_run(tmp_path)
    marker = tmp_path / "payload-ran"
    raw = _reference_load(run / STATE_FILE)
    raw["torch_version"] = TorchVersion(str(raw["torch_version"]))
    raw["extra"] = _payloads(marker)["os.system"]
    torch.save(raw, run / STATE_FILE)
    assert _refused(run, marker).startswith("refusing to load")


def test_a_raw_pickle_is_refused(tmp_path: Path) -> None:
    run = _write_run(tmp_path)
    marker = tmp_path / "payload-ran"
    (run / STATE_FILE).write_bytes(pickle.dumps({"model": _payloads(marker)["os.system"]}))
    assert "not a torch.save zip archive" in _refused(run, marker)


def test_a_damaged_or_foreign_checkpoint_is_refused(tmp_path: Path) -> None:
    run = _write_run(tmp_path)
    marker = tmp_path / "never"
    torch.save({"weights": torch.zeros(3)}, run / STATE_FILE)
    assert "is not a train-vae checkpoint" in _refused(run, marker)
    data = (FIXTURE / "stopped" / STATE_FILE).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        pkl = next(i for i in z.infolist() if i.filename.endswith("/data.pkl"))
    name_len, extra_len = struct.unpack("<HH", data[pkl.header_offset + 26 : pkl.header_offset + 30])
    damaged = bytearray(data)
    damaged[pkl.header_offset + 30 + name_len + extra_len + 10] ^= 0xFF  # a byte inside data.pkl
    (run / STATE_FILE).write_bytes(bytes(damaged))
    assert "cannot read" in _refused(run, marker)
