"""evals/table1.py helpers: the code's KL on the test set, run names, seed spreads."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "evals"))
import table1  # noqa: E402


class _FixedPosterior(torch.nn.Module):
    """encode() returns a fixed posterior for every image: mean (1, -2), log-variance (0, log 4)."""

    def encode(self, x: torch.Tensor):
        b = x.shape[0]
        return torch.tensor([1.0, -2.0]).expand(b, 2), torch.tensor([0.0, math.log(4.0)]).expand(b, 2)


def test_rate_is_the_mean_kl_summed_over_latent_dims():
    # KL(N(m, s^2) || N(0, 1)) = (m^2 + s^2 - 1 - log s^2) / 2 per dimension, by hand:
    expected = (1 + 1 - 1 - 0) / 2 + (4 + 4 - 1 - math.log(4.0)) / 2
    x = torch.zeros(2500, 1, 28, 28)  # more than one chunk of 1000
    assert table1.rate(_FixedPosterior(), x) == pytest.approx(expected, rel=1e-6)


def test_run_names_and_spreads():
    assert table1.parse_name("short-dft+ssim-s2") == {"kind": "short", "loss": "dft+ssim", "seed": "2"}
    s = table1.spread([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == pytest.approx(1.0) and s["n"] == 3
    assert math.isnan(table1.spread([1.0])["std"])


def test_welch_interval_matches_scipy():
    from scipy import stats

    from _stats import welch

    a, b = [32.91, 33.05, 32.73], [32.85, 32.78, 32.93]
    got = welch(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert got["lo"] == pytest.approx(ci.low, rel=1e-9) and got["hi"] == pytest.approx(ci.high, rel=1e-9)
    assert got["exceeds_spread"] is False and got["n"] == [3, 3]
    assert welch([1.0, 1.1, 0.9], [2.0, 2.1, 1.9])["exceeds_spread"] is True
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(1 - 0.05 / 32)  # Bonferroni over 32
    got = welch(a, b, level=1 - 0.05 / 32)
    assert got["lo"] == pytest.approx(ci.low, rel=1e-9) and got["hi"] == pytest.approx(ci.high, rel=1e-9)
    with pytest.raises(ValueError, match="level"):
        welch(a, b, level=95)


def test_ablation_rows_are_compared_with_ssim_alone_and_the_default():
    def run(psnr):
        return {"complete": True, "metrics": {"psnr_sampled": psnr, "ssim_sampled": 0.47, "lpc_si_samples": 0.87,
                                              "spectral_deficit_samples_db": 7.0 + psnr / 100}}

    runs = {f"short-ssim-s{s}": run(11.75 + 0.01 * s) for s in range(3)}
    runs.update({f"short-lpl-s{s}": run(11.80 - 0.01 * s) for s in range(3)})
    runs.update({f"abl-wide-s{s}": run(12.50 + 0.01 * s) for s in range(3)})
    runs.update({f"short-ssim-released-s{s}": run(20.0) for s in range(3)})  # another row, not SSIM alone
    runs["abl-one-s0"] = run(11.0)
    runs["abl-unfinished-s0"] = {"complete": False}
    lines = table1._ablation_section({"runs": runs})
    rows = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ") and not line.startswith("| variant")}
    assert list(rows) == ["ssim", "lpl", "one", "wide"]
    assert rows["ssim"].startswith("| ssim | 3 | 11.760 ± 0.010 |")
    assert "vs SSIM: +0.750" in rows["wide"] and "**yes**" in rows["wide"]
    assert rows["wide"].split(" | ")[-1].startswith("+0.720 [") and rows["wide"].endswith("**yes** |")  # vs lpl
    assert "needs 2+ seeds" in rows["one"] and "vs SSIM" not in rows["one"]
    # lpl and wide are compared with SSIM on 4 metrics each: a family of 8; +0.75 dB survives Bonferroni
    assert any("With 8 such comparisons" in line for line in lines)
    assert "**yes**, *holds*" in rows["wide"]
    assert table1._ablation_section({"runs": {"short-ssim-s0": run(1.0)}}) == []
    # a reference row with no finished run yet is left out, not an error
    partial = {n: r for n, r in runs.items() if not n.startswith("short-lpl-")}
    rows = [line for line in table1._ablation_section({"runs": partial}) if line.startswith("| ") and "variant" not in line]
    assert [line.split(" | ")[0][2:] for line in rows] == ["ssim", "one", "wide"]
    assert rows[-1].endswith("needs 2+ seeds |")


def test_confirmation_compares_only_the_fresh_seed_runs():
    def run(loss, seed, psnr):
        return {"complete": True, "loss": loss, "seed": str(seed),
                "metrics": {"psnr_sampled": psnr, "ssim_sampled": 0.47, "lpc_si_samples": 0.87 + seed / 1000,
                            "spectral_deficit_samples_db": 7.0 + seed / 100}}

    runs = {f"short-ssim-s{s}": run("ssim", s, 0.0) for s in range(3)}  # not fresh: left out
    runs.update({f"abl-wide-s{s}": run("wide", s, 50.0) for s in range(3)})
    assert table1._confirmation_section({"runs": runs}) == []
    runs.update({f"conf-ssim-s{s}": run("ssim", s, 11.75 + 0.01 * s) for s in (3, 4, 5)})
    runs.update({f"conf-wide-s{s}": run("wide", s, 11.85 + 0.02 * s) for s in (3, 4, 5)})
    runs["conf-wide-s6"] = {"complete": False}
    lines = table1._confirmation_section({"runs": runs})
    (row,) = [line for line in lines if line.startswith("| wide")]
    assert row.startswith("| wide | 3 (3) | +0.140 [") and "**yes**" in row.split(" | ")[2]
    assert any("Bonferroni" in line for line in lines) and ("*holds*" in row or "not after Bonferroni" in row)
    # the replication reads only the rep-* runs
    assert table1._confirmation_section({"runs": runs}, "rep") == []
    runs.update({f"rep-{n[5:]}": r for n, r in runs.items() if n.startswith("conf-")})
    rep = table1._confirmation_section({"runs": runs}, "rep")
    assert any(line.startswith("## Replication") for line in rep) and any(line.startswith("| wide | 3 (3) |") for line in rep)
    # its verdict waits for every pre-registered seed, and then reads the primary endpoint only
    assert any(line.startswith("The test is made at 5 seeds of each; 3 (3)") for line in rep)
    for s in (6, 7):
        runs[f"rep-ssim-s{s}"] = run("ssim", s, 11.75)
        runs[f"rep-wide-s{s}"] = run("wide", s, 11.90)
    rep = table1._confirmation_section({"runs": runs}, "rep")
    (verdict,) = [line for line in rep if line.startswith("Primary endpoint")]
    assert "SSIM (sampled z)" in verdict and "+0.0000" in verdict and "**not confirmed**" in verdict
    # the follow-up's primary endpoint is the spectral deficit
    runs.update({f"dfc-{n[4:]}": r for n, r in runs.items() if n.startswith("rep-ssim")})
    for s in range(3, 8):  # the variant's samples lack half a decibel less
        w = run("wide", s, 11.90)
        w["metrics"]["spectral_deficit_samples_db"] -= 0.5
        runs[f"dfc-wide-s{s}"] = w
    dfc = table1._confirmation_section({"runs": runs}, "dfc")
    assert any(line.startswith("## Follow-up") for line in dfc)
    (verdict,) = [line for line in dfc if line.startswith("Primary endpoint")]
    assert "spectral deficit" in verdict and "**confirmed**" in verdict
