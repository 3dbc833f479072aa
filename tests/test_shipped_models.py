"""Shipped models (models/<name>/): found by name, and each re-measured against its model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stftblur.data import DatasetNotFoundError, load_dataset
from stftblur.models import CheckpointError, create_vae, load_vae, save_vae, shipped_cards, shipped_models
from stftblur.training import evaluate_reconstructions
from stftblur_cli.main import cli

from ._vae_support import one_thread  # noqa: F401 (fixture)
from .conftest import ROOT, require_shared

SHIPPED = sorted((ROOT / "models").glob("*/model.safetensors"))


def test_a_name_resolves_to_a_shipped_model_and_a_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = tmp_path / "zoo"
    (zoo / "dft-ssim").mkdir(parents=True)
    save_vae(create_vae(latent_dim=3), zoo / "dft-ssim" / "model.safetensors")
    monkeypatch.setenv("STFTBLUR_MODELS", str(zoo))
    assert list(shipped_models()) == ["dft-ssim"]
    assert load_vae("dft+ssim").config.latent_dim == 3 and load_vae("dft-ssim").config.latent_dim == 3
    with pytest.raises(CheckpointError, match="shipped: dft-ssim"):
        load_vae("l2")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dft-ssim").mkdir()
    save_vae(create_vae(latent_dim=5), tmp_path / "dft-ssim" / "model.safetensors")
    assert load_vae("dft-ssim").config.latent_dim == 5  # an existing path is not a name


def test_cli_sample_takes_a_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = tmp_path / "zoo"
    (zoo / "ours").mkdir(parents=True)
    save_vae(create_vae(), zoo / "ours" / "model.safetensors")
    monkeypatch.setenv("STFTBLUR_MODELS", str(zoo))
    result = CliRunner().invoke(cli, ["sample", "--checkpoint", "ours", "--n", "4", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "s").rglob("*.png"))) >= 4
    bad = CliRunner().invoke(cli, ["sample", "--checkpoint", "nope", "--n", "4", "--out", str(tmp_path / "t")])
    assert bad.exit_code == 2 and "shipped" in bad.output


def test_models_command_lists_every_shipped_model_with_its_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = tmp_path / "zoo"
    for name in ("dft-ssim", "nocard"):
        (zoo / name).mkdir(parents=True)
        save_vae(create_vae(), zoo / name / "model.safetensors")
    (zoo / "empty").mkdir()  # no weights: not a model
    card = {"loss": "dft+ssim", "test_set": {"psnr_sampled": 11.9012, "ssim_sampled": 0.48412, "lpc_si_samples": 0.8723,
                                             "spectral_deficit_samples_db": 6.551, "kl_test_nats": 19.06}}
    (zoo / "dft-ssim" / "card.json").write_text(json.dumps(card))
    monkeypatch.setenv("STFTBLUR_MODELS", str(zoo))
    assert shipped_cards() == {"dft-ssim": card, "nocard": {}}
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.output.splitlines()[2:]}
    assert rows["dft-ssim"][1:] == ["dft+ssim", "11.90", "/", "0.484", "0.872", "+6.55", "19.1", "dft-ssim/README.md"]
    assert rows["nocard"][1:5] == ["-", "-", "-", "-"]
    assert json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)["dft-ssim"] == card
    monkeypatch.setenv("STFTBLUR_MODELS", str(tmp_path / "nowhere"))
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0 and result.output.startswith("no shipped models")


def test_every_shipped_model_has_a_card_with_its_numbers() -> None:
    for name, card in shipped_cards().items():
        assert card["loss"] and card["command"].startswith("stftblur train-vae"), name
        assert {"psnr_sampled", "ssim_sampled", "lpc_si_samples", "kl_test_nats"} <= set(card["test_set"]), name


@pytest.mark.parametrize("weights", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_shipped_model_matches_its_card(weights: Path, one_thread: None) -> None:  # noqa: F811
    card = json.loads((weights.parent / "card.json").read_text())
    assert (weights.parent / "README.md").read_text().count(f"{card['subset']['psnr_sampled']:.3f}") == 1
    if card.get("dataset", "mnist") == "mnist":
        x = load_dataset("mnist", split="test", binarize=True, data_dir=require_shared("data", "mnist")).images[:500]
    else:  # Fashion-MNIST, grayscale: Debian's dataset-fashion-mnist (.ci/run installs it)
        try:
            x = load_dataset(card["dataset"], split="test", binarize=False, download=False).images[:500]
        except DatasetNotFoundError as e:
            pytest.skip(f"{card['dataset']} not installed (apt-get install dataset-fashion-mnist): {e}")
    m = evaluate_reconstructions(load_vae(weights.parent.name), x, z=("sampled", "mean"), seed=0)
    for key, expected in card["subset"].items():
        assert m[key] == pytest.approx(expected, abs=1e-4), key
