import os
import warnings

import pytest
import torch

warnings.filterwarnings("ignore")
torch.set_num_threads(2)

SUBSET = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "cifar10_subset.npz")


@pytest.fixture
def subset_path():
    """Real CIFAR-10 images beside the checkout; a fresh clone without ../shared skips these tests."""
    if not os.path.exists(SUBSET):
        pytest.skip("../shared/data/cifar10_subset.npz not present")
    return os.path.abspath(SUBSET)


@pytest.fixture
def tiny_cfg(tmp_path):
    from zoo.config import TrainConfig

    return TrainConfig(arch="sharp_tiny", data="synthetic", epochs=1, batch_size=64, lr=0.05,
                       device="cpu", out=str(tmp_path / "zoo"))
