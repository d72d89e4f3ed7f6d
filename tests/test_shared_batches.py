"""One AutoAttack evaluation shared by several processes (bench.store.batches): the one-process row, bit for bit.

The smoke study's PGD-AT model on a few of its own test points at Linf 16/255 (where some points fall in each
stage), AutoAttack's two gradient stages (autoattack-fast) in batches of a few points: a few batches a stage, a
few seconds each, so that two processes both get some. Each process runs on one thread, as the grid's workers
do, so that their arithmetic is the same.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import ROOT

pytestmark = pytest.mark.slow  # AutoAttack in several processes
ENV = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
STAGES = ("apgd-ce", "apgd-t")
EPS = 16 / 255
N, BATCH = 12, 3
CLASSES = 4  # run_autoattack's APGD-T targets 3 classes (the model has 10): a third of the standard's work


@pytest.fixture(scope="module")
def pgd_at(smoke_study):
    return str(next(smoke_study[1].glob("*pgd_at*.pt")))


def _one_process(ckpt, board=None):
    from bench.attacks.autoattack import run_autoattack
    from bench.data import load_points
    from bench.eval.loading import load_model_spec

    model = load_model_spec(ckpt).model.eval()
    pts = load_points("digits", n=N)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_autoattack(model, pts.x.float().div(255), pts.y, norm="Linf", eps=EPS, stages=STAGES,
                              batch_size=BATCH, num_classes=CLASSES, board=board)
    finally:
        torch.set_num_threads(threads)


# a helper process that dies (SIGKILL) at its first model call after one batch's result is on the board: in the
# next batch, holding its claim, as a worker killed mid-batch does
DYING_HELPER = textwrap.dedent("""
    import glob, os, signal, sys
    import torch
    from bench.attacks.autoattack import run_autoattack
    from bench.data import load_points
    from bench.eval.loading import load_model_spec
    from bench.store.batches import BatchBoard

    ckpt, folder, lock = sys.argv[1:4]
    n, batch, eps, classes = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
    model = load_model_spec(ckpt).model.eval()

    class Dies(torch.nn.Module):
        def forward(self, x):
            if glob.glob(os.path.join(folder, "*.pt")):
                os.kill(os.getpid(), signal.SIGKILL)
            return model(x)

    pts = load_points("digits", n=n)
    run_autoattack(Dies().eval(), pts.x.float().div(255), pts.y, norm="Linf", eps=eps, stages=("apgd-ce", "apgd-t"),
                   batch_size=batch, num_classes=classes, board=BatchBoard(folder, lock, helper=True))
""")


def test_a_worker_killed_mid_batch_loses_only_that_batch_and_the_result_is_one_processs(pgd_at, tmp_path):
    """A helper computes the first batch, is killed in the second holding its claim; the holder takes over the
    dead worker's batch, reuses the finished one (and recomputes one whose file holds other points), and ends
    with one process's images, flags and stage accuracies, bit for bit, computed by 2 workers."""
    from bench.store.batches import BatchBoard

    folder, lock = str(tmp_path / "board"), str(tmp_path / "results.jsonl")
    board = BatchBoard(folder, lock).open()
    res = subprocess.run([sys.executable, "-c", DYING_HELPER, pgd_at, folder, lock, str(N), str(BATCH), repr(EPS),
                          str(CLASSES)],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == -9, res.stderr[-2000:]  # killed, not finished
    left = sorted(os.listdir(folder))
    assert left == ["apgd-ce-0.pt", "apgd-ce-1.claim"]  # one batch done; the claim of the one it died in
    # a result file of other points where APGD-T's first batch goes (left by another run): computed again
    torch.save({"idx": torch.tensor([11, 10, 9]), "fooled": torch.ones(3, dtype=torch.bool),
                "adv": torch.zeros(3, 3, 32, 32), "worker": "elsewhere:1"}, os.path.join(folder, "apgd-t-0.pt"))

    adv, info = _one_process(pgd_at, board=board)
    ref_adv, ref = _one_process(pgd_at)
    assert torch.equal(adv, ref_adv)
    acc = ref["stage_acc"]
    assert info["stage_acc"] == acc and 0 < acc["apgd-t"] < acc["apgd-ce"] < acc["clean"]  # some fall in each
    from bench.attacks.predict import predict
    from bench.data import load_points
    from bench.eval.loading import load_model_spec

    model, pts = load_model_spec(pgd_at).model.eval(), load_points("digits", n=N)
    x = pts.x.float().div(255)
    robust = (predict(model, x, BATCH) == pts.y) & (predict(model, adv, BATCH) == pts.y)
    assert robust.float().mean().item() == pytest.approx(acc["apgd-t"])  # each fooled point's image fools it
    assert (adv - x).abs().amax() <= EPS + 1e-6
    assert (info["workers"], ref["workers"]) == (2, 1)


def _rows(out):
    return [json.loads(line) for line in open(out / "results.jsonl")]


def test_two_bench_run_processes_share_one_evaluation_and_write_the_one_process_row(pgd_at, tmp_path):
    """Two `bench.run` processes on one results folder and one AutoAttack evaluation: one holds it, the other
    joins its batches; one row, equal to a lone process's in everything but the time and the worker count."""
    args = [sys.executable, "-m", "bench.run", "--models", pgd_at, "--attacks", "autoattack-fast", "--eps", "16/255",
            "--batch-size", str(BATCH), "--n-examples", str(N), "--data", "digits", "--no-progress", "--no-site",
            "--device", "cpu"]
    two = [subprocess.Popen([*args, "--out", str(tmp_path / "two")], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for _ in range(2)]
    one = subprocess.run([*args, "--out", str(tmp_path / "one")], cwd=ROOT, env=ENV, capture_output=True,
                         text=True, timeout=600)
    for p in two:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-2000:]
    assert one.returncode == 0, one.stderr[-2000:]
    (alone,), (shared,) = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert (alone["workers"], shared["workers"]) == (1, 2)
    assert alone["status"] == "ok" and 0 < alone["robust_acc"] < alone["clean_acc"]
    timing = {"time", "seconds", "stage_seconds", "workers"}
    assert {k: v for k, v in shared.items() if k not in timing} == {k: v for k, v in alone.items() if k not in timing}
    assert not os.listdir(tmp_path / "two" / ".attack_state") and not os.listdir(tmp_path / "two" / ".claims")
