"""Shared fixtures. Real photos live in ../shared/data (absent in a user's fresh clone: the
tests that need them skip with the reason)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def _find_shared_data() -> Path:
    env = os.environ.get("RECON_SHARED_DATA")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return Path(__file__).resolve().parents[2] / "shared" / "data"


SHARED_DATA = _find_shared_data()


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:  # do not pay for importing torch when no GPU test was collected
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - a torch that cannot answer has no CUDA
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-photo data not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's torch work on one thread. Small tensors are as fast on one, and on a
    loaded machine OpenMP's spinning threads made torch 10-100x slower (measured on the shared
    2-core box). Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
