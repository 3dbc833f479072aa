"""Shared fixtures: where ../shared lives, real MNIST, and the CUDA marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("STFTBLUR_SHARED", ROOT.parent / "shared"))


def require_shared(*parts: str) -> Path:
    """Path under ../shared; skip when it is absent, unless CI is set (then fail)."""
    path = shared_dir().joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing and CI is set: the shared data must be present in CI")
        pytest.skip(f"{path} is absent (set STFTBLUR_SHARED)")
    return path


@pytest.fixture
def shared() -> Path:
    return require_shared()


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
