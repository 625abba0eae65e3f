"""Shared test settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The test models are tiny, so per-op overhead dominates: one intra-op thread is faster, and it
    stays fast when the machine is busy (more threads than free cores make torch's pool spin)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
