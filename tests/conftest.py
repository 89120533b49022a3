from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sci_edge.paths import shared_data


def need_shared(*parts: str) -> Path:
    """The shared data path, or skip the test with a reason."""
    path = shared_data(*parts)
    if path is None:
        pytest.skip(f"shared data {'/'.join(parts)} not found (../shared beside the checkout, "
                    "or set SCI_EDGE_SHARED)")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def random_spikes(rng):
    def make(T=9, H=7, W=13, p=0.3):
        return (rng.random((T, H, W)) < p).astype(np.uint8)
    return make

