"""Shared fixtures: the real-image data folder and a seeded random generator."""
from __future__ import annotations

import pytest
import torch

from denoise.evaluation import testsets as datasets


@pytest.fixture(scope="session")
def data_root():
    """The folder of real images (Set12, BSD68, ...); skips the test when there is none."""
    root = datasets.data_root()
    if root is None:
        pytest.skip(f"real images not found: set {datasets.ENV_VAR} or place them in ../shared/data")
    return root


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU torch.Generator seeded with 0, fresh for each test."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Small models on a shared 2-core machine: one thread avoids oversubscription.
    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
