"""Fixtures shared by the services' tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def two_threads():
    """Torch on 2 threads for one module (cold-start scoring is slow on 1), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)
