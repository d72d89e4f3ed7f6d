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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """The README's main command, run once per session: `python -m bench.study --preset smoke` (3 checkpoints,
    every evaluation, REPORT.md, leaderboard, site). Tests read it, or copy its checkpoints (`smoke_zoo`) to run
    other studies on them without training again."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("smoke")
    out, zoo = tmp / "study", tmp / "zoo"
    cmd = [sys.executable, "-m", "bench.study", "--preset", "smoke", "--out", str(out), "--zoo-dir", str(zoo),
           "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=ROOT,
                         env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert res.returncode == 0, res.stderr[-3000:]
    return out, zoo, cmd, res


@pytest.fixture
def smoke_zoo(smoke_study, tmp_path):
    """A copy of the smoke study's checkpoints: a study run on it reuses them (it may write beside them)."""
    import shutil

    dest = tmp_path / "smoke-zoo"
    shutil.copytree(smoke_study[1], dest)
    return dest
