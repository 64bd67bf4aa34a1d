"""Fixtures of the demo tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Torch on one thread for tiny models: a second intra-op thread only waits on the first, and a test running
    beside this one may hold the other core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
