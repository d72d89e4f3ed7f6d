"""torchrun on CPU with the gloo backend and 2 processes."""
import dataclasses
import os
import subprocess
import sys

import pytest

from bench.store.rows import read_rows
from zoo.checkpoint import load_checkpoint
from zoo.config import TrainConfig
from zoo.train import train
from conftest import ROOT

pytestmark = pytest.mark.slow  # torchrun with several processes



def torchrun(*args, rc=0):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert res.returncode == rc, res.stderr[-3000:]
    return res


@pytest.mark.parametrize("recipe,extra", [("standard", []), ("sam", ["--amp", "bf16", "--channels-last"])])
def test_ddp_training_keeps_ranks_identical(tmp_path, recipe, extra):
    res = torchrun("-m", "zoo.train", "--arch", "sharp_tiny", "--recipe", recipe, "--data", "synthetic",
                   "--epochs", "1", "--n-train", "256", "--batch-size", "32", "--device", "cpu",
                   "--out", str(tmp_path), "--no-progress", *extra)
    path = res.stdout.strip().splitlines()[-1]
    ckpt = load_checkpoint(path)
    assert ckpt["distributed"] == {"world_size": 2, "max_weight_diff_across_ranks": 0.0}
    assert ckpt["precision"]["train"] == ("bf16 autocast" if extra else "fp32")
    h = ckpt["history"][0]
    assert round(h["images_per_s"] * h["seconds"]) == 256  # both ranks' counts reduced: every image once


def test_sharded_bench_rows_equal_single_process_rows(tmp_path):
    base = TrainConfig(arch="sharp_tiny", data="synthetic", epochs=1, batch_size=64, device="cpu",
                       out=str(tmp_path / "zoo"), steps=2)
    models = [train(dataclasses.replace(base, recipe=r), progress=False) for r in ("standard", "pgd_at")]
    args = ["--models", *models, "--attacks", "clean,pgd", "--eps", "2/255,8/255", "--data", "synthetic",
            "--n-examples", "16", "--device", "cpu", "--no-progress", "--pgd-steps", "5"]
    torchrun("-m", "bench.run", *args, "--out", str(tmp_path / "sharded"))
    from bench import run as bench_run

    assert bench_run.main([*args, "--out", str(tmp_path / "single")]) == 0

    def essence(out):
        rows = read_rows(str(tmp_path / out / "results.jsonl"))
        return sorted((r["key"], r["model_id"], r["attack"], r["eps"], r["clean_acc"], r["robust_acc"]) for r in rows)

    sharded, single = essence("sharded"), essence("single")
    assert len(single) == 2 * 3 and sharded == single  # nothing lost, nothing duplicated, same numbers
    assert not list((tmp_path / "sharded").glob("results.rank*.jsonl"))
    assert (tmp_path / "sharded" / "leaderboard.md").exists()


def test_torchrun_ranks_share_one_autoattack_evaluation_and_write_the_one_process_row(smoke_study, tmp_path):
    """One model, one AutoAttack evaluation, 2 ranks: rank 0 holds it, rank 1 (no job of its own) joins its
    batches; the row is a lone process's but for the time and the worker count (bench.store.batches)."""
    ckpt = str(next(smoke_study[1].glob("*pgd_at*.pt")))
    args = ["--models", ckpt, "--attacks", "autoattack-fast", "--eps", "16/255", "--batch-size", "3",
            "--n-examples", "12", "--data", "digits", "--device", "cpu", "--no-progress", "--no-site"]
    torchrun("-m", "bench.run", *args, "--out", str(tmp_path / "ranks"))
    single = subprocess.run([sys.executable, "-m", "bench.run", *args, "--out", str(tmp_path / "single")], cwd=ROOT,
                            env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"), capture_output=True,
                            text=True, timeout=900)
    assert single.returncode == 0, single.stderr[-3000:]
    (ranks,), (alone,) = (read_rows(str(tmp_path / out / "results.jsonl")) for out in ("ranks", "single"))
    assert (ranks["workers"], alone["workers"]) == (2, 1)
    timing = {"time", "seconds", "stage_seconds", "workers"}
    assert {k: v for k, v in ranks.items() if k not in timing} == {k: v for k, v in alone.items() if k not in timing}


def test_a_rank_helping_another_records_no_second_failure_for_its_model(smoke_study, tmp_path):
    """Rank 1's model does not load: rank 1 records that once; rank 0, done with its own AutoAttack and loading
    rank 1's models to help it, records nothing more (one failed load row, the good model's ok row)."""
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    good = str(next(smoke_study[1].glob("*standard*.pt")))
    res = torchrun("-m", "bench.run", "--models", good, str(bad), "--attacks", "autoattack-fast", "--n-examples",
                   "8", "--data", "digits", "--device", "cpu", "--no-progress", "--no-site", "--out",
                   str(tmp_path / "r"), rc=1)  # a model failed: exit 1
    rows = read_rows(str(tmp_path / "r" / "results.jsonl"))
    assert res.stderr.count("skipped") == 0  # the helping rank says nothing of a model it does not own
    assert sorted((r.get("stage", r.get("attack")), r["status"]) for r in rows) == [("autoattack-fast", "ok"),
                                                                                   ("load", "failed")]
