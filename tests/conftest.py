import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

warnings.filterwarnings("ignore")
# The README's test command runs two pytest-xdist workers on the two cores: each computes on one thread, and so
# do the processes it starts; one process alone takes both.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, 2 // WORKERS))
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = "1"


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


def import_file(path: str, name: str, monkeypatch=None):
    """The module of one Python file, by path; with monkeypatch it is also in sys.modules while the test runs (as
    an installed module would be)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    if monkeypatch is not None:
        monkeypatch.setitem(sys.modules, name, mod)
    spec.loader.exec_module(mod)
    return mod


def script(name: str):
    """scripts/NAME.py as a module (the scripts are not a package)."""
    return import_file(os.path.join(ROOT, "scripts", f"{name}.py"), name)


SMOKE_TIMEOUT_S = 1200  # the smoke study takes about 90 s on one thread of a busy 2-core machine


def smoke_folder(config) -> Path:
    """Where this session's smoke study runs: one folder for the whole session, every pytest-xdist worker's."""
    base = config._tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "smoke-study"


def smoke_command(folder: Path) -> list[str]:
    # no --no-progress: the output goes to files, so the default (bars on a terminal only) gives a plain log
    return [sys.executable, "-m", "bench.study", "--preset", "smoke", "--out", str(folder / "study"),
            "--zoo-dir", str(folder / "zoo")]


def pytest_collection_finish(session):
    """Start the smoke study as soon as the tests are collected, when any of them reads it: it runs on one thread
    beside the tests until the first that needs it waits for it. One process starts it (the first worker, or the
    only process); the shell records its exit status in `rc` once it has ended, whoever is still running."""
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0" or session.config.option.collectonly:
        return
    if not any("smoke_study" in item.fixturenames for item in session.items):
        return
    folder = smoke_folder(session.config)
    folder.mkdir()
    with open(folder / "stdout", "w") as out, open(folder / "stderr", "w") as err:
        study = subprocess.Popen(["sh", "-c", '"$@"; echo $? > "$0/rc.part" && mv "$0/rc.part" "$0/rc"', str(folder),
                                  *smoke_command(folder)], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                 env=dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"),
                                 start_new_session=True)
    (folder / "pid").write_text(str(study.pid))


def pytest_sessionfinish(session, exitstatus):
    """A smoke study still running when the whole session ends (a run stopped early by -x, or a mutation that
    keeps it from ending) is stopped with the session: nobody is left to read it, and it would hold a CPU."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers end before the controller: it decides
        return
    folder = smoke_folder(session.config)
    if (folder / "pid").exists() and not (folder / "rc").exists():
        try:
            os.killpg(int((folder / "pid").read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


@pytest.fixture(scope="session")
def smoke_study(request):
    """The README's main command, run once per session: `python -m bench.study --preset smoke` (3 checkpoints,
    every evaluation, REPORT.md, leaderboard, site), started when the tests were collected. Tests read it, or
    copy its checkpoints (`smoke_zoo`) to run other studies on them without training again; none writes into it.
    One thread, as the grid's workers run: its rows are the one-process reference the multi-worker runs must
    equal bit for bit."""
    folder = smoke_folder(request.config)
    deadline = time.monotonic() + SMOKE_TIMEOUT_S
    while not (folder / "rc").exists():  # written once, when the study has ended: no moment to miss
        assert time.monotonic() < deadline, f"the smoke study in {folder} did not end in {SMOKE_TIMEOUT_S} s"
        time.sleep(0.5)
    res = subprocess.CompletedProcess(smoke_command(folder), int((folder / "rc").read_text()),
                                      (folder / "stdout").read_text(), (folder / "stderr").read_text())
    assert res.returncode == 0, res.stderr[-3000:]
    return folder / "study", folder / "zoo", res


def seed_rows(smoke_out, dest_out, keep) -> int:
    """Copy the smoke study's ok rows that `keep(row)` selects into DEST_OUT/results.jsonl (and its measures rows
    into DEST_OUT/measures.jsonl): a study on a copy of its checkpoints finds them cached (the same files, so the
    same keys), as a rerun would. Tests of what does not depend on those rows (launchers, retries) seed the
    AutoAttack rows of robust models, which take tens of seconds each on one CPU thread; the tests that compute
    them in workers do not seed."""
    from bench.store.rows import append_row, read_rows
    from bench.store.schema import check_measure_row

    os.makedirs(dest_out, exist_ok=True)
    seeded = 0
    for name, check in (("results.jsonl", None), ("measures.jsonl", check_measure_row)):
        rows = [r for r in read_rows(str(smoke_out / name), check) if r.get("status") == "ok" and keep(r)]
        for r in rows:
            append_row(str(dest_out / name), r)
        seeded += len(rows)
    return seeded


@pytest.fixture
def smoke_zoo(smoke_study, tmp_path):
    """A copy of the smoke study's checkpoints, claimed by no study (its claim is not copied): a study run on it
    reuses them (it may write beside them)."""
    return copy_checkpoints(smoke_study[1], tmp_path / "smoke-zoo")


def copy_checkpoints(zoo, dest):
    """The checkpoints of a zoo folder, copied without the claim of the study that made them (bench.study's
    .study.json): a study of other rows may use the copy."""
    import shutil

    shutil.copytree(zoo, dest, ignore=shutil.ignore_patterns(".study.json"))
    return dest


@pytest.fixture(scope="session")
def hundred_classes(tmp_path_factory):
    """`npz:PATH` of a tiny 100-class image set (random pixels, 2 training and 1 test image per class): what a
    CIFAR-100-shaped model is trained on here."""
    import numpy as np

    path = tmp_path_factory.mktemp("c100") / "c100.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (200, 3, 32, 32), dtype=np.uint8), y_train=np.arange(200) % 100,
             x_test=rng.integers(0, 256, (100, 3, 32, 32), dtype=np.uint8), y_test=np.arange(100))
    return f"npz:{path}"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """The session's checkpoint factory: checkpoint(**TrainConfig fields) trains a model once per distinct config
    (sharp_tiny on synthetic data, one epoch, CPU unless told otherwise) and returns the path of a fresh copy, so
    a test may damage or move its file. Seeds are fixed: the same config gives the same weights."""
    import json
    import shutil

    from zoo.config import TrainConfig
    from zoo.train import train

    cache = tmp_path_factory.mktemp("checkpoints")
    trained = {}

    def make(**over):
        cfg = {"arch": "sharp_tiny", "data": "synthetic", "n_train": 64, "epochs": 1, "batch_size": 64,
               "device": "cpu", **over}
        key = json.dumps(cfg, sort_keys=True, default=str)
        if key not in trained:
            out = cache / f"c{len(trained)}"
            trained[key] = train(TrainConfig(**cfg, out=str(out)), progress=False)
        dest = tmp_path_factory.mktemp("checkpoint") / os.path.basename(trained[key])
        shutil.copyfile(trained[key], dest)
        return str(dest)

    return make
