"""Shared by the tests/test_vae_*.py files."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run on one CPU thread: with two threads, a busy neighbour process on a 2-core machine makes
    every small parallel region wait for a time slice (several times slower), and one thread also makes
    float results independent of the machine's core count."""
    from stftblur_cli._process import tune_allocator

    tune_allocator()  # spares each training step thousands of page faults (see its docstring)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
