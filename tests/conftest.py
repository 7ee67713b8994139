import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the seed oracle module

import pytest

# Two CPU cores on CI: keep every test's torch single-threaded so parallel work stays predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _torch_threads():
    try:
        import torch
    except ImportError:  # the torch-free tests still run
        yield
        return
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
