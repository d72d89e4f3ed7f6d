"""Nothing lost, nothing let in: fuzzed checkpoints, verified weights, torn rows, concurrent runs, refusals."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from bench import run as bench_run
from bench.store.rows import append_row, read_rows, scan_rows
from zoo.checkpoint import CheckpointError, load_checkpoint, seal
from zoo.train import train
from conftest import ROOT, script

pytestmark = pytest.mark.slow  # kills and damaged files through the whole bench

FUZZ_N = int(os.environ.get("SHARPBENCH_FUZZ_N", "300"))  # run thousands with SHARPBENCH_FUZZ_N=5000


@pytest.fixture(scope="module")
def good(checkpoint):
    return checkpoint()


def _bench(models, out, *extra):
    return bench_run.main(["--models", *models, "--data", "synthetic", "--n-examples", "16", "--device", "cpu",
                           "--out", str(out), "--no-progress", "--no-leaderboard", *extra])


def test_fuzzed_checkpoints_give_one_line_errors_or_correct_loads(tmp_path):
    fuzz = script("fuzz_checkpoints")
    res = fuzz.run_fuzz(FUZZ_N, seed=0, folder=str(tmp_path))
    assert not res["crashes"], res["crashes"][:5]
    assert not res["code_ran"]  # the pickled shell command never executed
    counts = res["counts"]
    assert sum(counts.values()) == FUZZ_N >= 300
    for kind in ("random_bytes", "random_with_magic", "truncated", "byte_flips", "wrong_objects", "wrong_arch",
                 "nan_weights", "pickled_code"):
        assert counts[(kind, "loaded")] == 0 and counts[(kind, "error")] > 0, kind  # none of these may load
    assert counts[("legacy_format", "loaded")] > 0  # an intact old-format checkpoint is still readable


def test_fuzzed_files_among_good_checkpoints_cost_only_their_own_rows(good, tmp_path):
    fuzz = script("fuzz_checkpoints")
    cases = fuzz.make_cases(good, str(tmp_path), 20, seed=3)
    bad = [c["path"] for c in cases if c["kind"] not in ("wrong_tensors", "legacy_format") and c["arch"] is None]
    out = tmp_path / "r"
    assert _bench([bad[0], good, *bad[1:]], out, "--attacks", "clean,pgd") == 1
    rows = read_rows(str(out / "results.jsonl"))
    assert sum(r["status"] == "ok" for r in rows) == 2  # the good model's clean and PGD rows
    assert sum(r["status"] == "failed" for r in rows) == len(bad)
    assert all("\n" not in r["error"] for r in rows if r["status"] == "failed")


def test_damaged_weights_are_refused_by_their_checksum(good, tmp_path):
    ckpt = load_checkpoint(good)
    assert ckpt["weights_sha256"] == seal({"model": ckpt["model"]})["weights_sha256"]
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and v.numel() > 10)
    damaged = dict(ckpt["model"])
    damaged[name] = damaged[name].clone()
    damaged[name].view(-1)[3] += 1e-3  # one weight moved: a valid file (CRCs rewritten) with the old checksum
    torch.save({**ckpt, "model": damaged}, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match="weights do not match their checksum: the file is damaged; "
                                              "re-train or re-download it"):
        load_checkpoint(str(tmp_path / "damaged.pt"))
    # a flipped byte inside the stored tensor data is caught too (the record's CRC, then the checksum)
    raw = bytearray(open(good, "rb").read())
    at = raw.find(ckpt["model"][name].numpy().tobytes()[:16])
    assert at > 0
    raw[at + 5] ^= 0x40
    (tmp_path / "flipped.pt").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(str(tmp_path / "flipped.pt"))


def test_rows_say_whether_weights_were_verified(good, tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save(load_checkpoint(good)["model"], plain)
    out = tmp_path / "r"
    assert _bench([good], out, "--attacks", "clean") == 0
    assert _bench([str(plain)], out, "--attacks", "clean", "--arch", "sharp_tiny") == 0
    zoo_row, plain_row = read_rows(str(out / "results.jsonl"))
    assert zoo_row["verified"] is True and plain_row["verified"] is False
    assert zoo_row["clean_acc"] == plain_row["clean_acc"]


def test_resume_state_is_verified(tiny_cfg):
    cfg = dataclasses.replace(tiny_cfg, epochs=2)

    class Killed(Exception):
        pass

    def die(epoch):
        raise Killed

    with pytest.raises(Killed):
        train(cfg, progress=False, on_epoch_end=die)
    (state_path,) = [os.path.join(cfg.out, f) for f in os.listdir(cfg.out) if f.endswith(".resume.pt")]
    state = load_checkpoint(state_path)
    assert "weights_sha256" in state
    opt_state = state["optimizer"]["state"]
    first = next(iter(opt_state.values()))
    first["momentum_buffer"] = first["momentum_buffer"] + 1.0  # damaged optimizer state, old checksum kept
    torch.save(state, state_path)
    with pytest.raises(CheckpointError, match="checksum"):
        train(cfg, resume=True, progress=False)


def clean_row(key: str, correct: int = 3, n: int = 4) -> dict:
    """A minimal trusted row: a clean evaluation with its counts."""
    return {"key": key, "status": "ok", "attack": "clean", "norm": None, "eps": 0.0, "eps_str": "0", "model": "m",
            "model_id": "m" * 64, "data": "synthetic", "time": "2026-01-01T00:00:00", "attack_config": {},
            "n": n, "clean_correct": correct, "clean_acc": correct / n, "robust_correct": correct,
            "robust_acc": correct / n}


def test_torn_line_costs_only_itself(tmp_path, capsys):
    path = str(tmp_path / "results.jsonl")
    a, b, c, d = (k * 20 for k in "abcd")
    append_row(path, clean_row(a))
    with open(path, "a") as f:
        f.write('{"key": "%s", "sta' % b)  # a process killed mid-write
    append_row(path, clean_row(c))
    append_row(path, clean_row(d))
    rows, torn = scan_rows(path)
    assert [r["key"] for r in rows] == [a, c, d] and torn == 1
    assert [r["key"] for r in read_rows(path)] == [a, c, d]
    assert "skipped 1 torn line" in capsys.readouterr().err


def test_two_concurrent_runs_neither_duplicate_nor_lose_rows(tmp_path):
    from zoo.config import TrainConfig

    base = TrainConfig(arch="sharp_tiny", data="synthetic", epochs=1, n_train=64, batch_size=32, device="cpu",
                       out=str(tmp_path / "zoo"), steps=2)
    models = [train(dataclasses.replace(base, recipe=r), progress=False) for r in ("standard", "pgd_at")]
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "bench.run", "--models", *models, "--attacks", "clean,pgd", "--eps",
           "1/255,2/255,4/255,8/255", "--pgd-steps", "20", "--data", "synthetic", "--n-examples", "64",
           "--device", "cpu", "--out", str(out), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    rows = read_rows(str(out / "results.jsonl"))
    keys = [r["key"] for r in rows]
    assert len(rows) == 2 * 5 and len(set(keys)) == 10  # every evaluation once: none lost, none duplicated
    added = [int(o[0].strip().splitlines()[-1].split()[0]) for o in outs]
    assert sum(added) == 10  # no evaluation was computed twice
    assert not os.listdir(out / ".claims")  # every claim released


def test_pickled_code_is_refused_by_name_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(str(tmp_path / "evil.pt"))
    msg = str(e.value)
    assert "\n" not in msg and "posix.system" in msg and "only tensors and plain containers" in msg
    assert _bench([str(tmp_path / "evil.pt")], tmp_path / "r", "--attacks", "clean") == 1
    assert "posix.system" in capsys.readouterr().err
    assert not marker.exists()


def test_no_future_warning_on_import():
    res = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", "import bench.run, zoo.train"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and "FutureWarning" not in res.stderr, res.stderr[-1000:]


def test_robustbench_imports_without_its_pkg_resources_warning():
    """robustbench 1.1.1 imports setuptools' deprecated pkg_resources; every path into it goes through
    bench.deps, which filters exactly that warning (the same import without it does warn)."""
    code = ("import warnings; warnings.simplefilter('default'); {}; "
            "from robustbench.model_zoo import model_dicts; from robustbench.utils import load_model")
    ours = subprocess.run([sys.executable, "-c", code.format("from bench.deps import import_robustbench; "
                                                             "import_robustbench()")],
                          cwd=ROOT, capture_output=True, text=True)
    assert ours.returncode == 0 and "pkg_resources" not in ours.stderr, ours.stderr[-1000:]
    bare = subprocess.run([sys.executable, "-c", code.format("from bench.deps import import_autoattack; "
                                                             "import_autoattack()")],
                          cwd=ROOT, capture_output=True, text=True)
    assert "pkg_resources is deprecated" in bare.stderr


def test_damaged_file_message_round_trips_into_a_failed_row(good, tmp_path):
    raw = open(good, "rb").read()
    (tmp_path / "cut.pt").write_bytes(raw[:len(raw) // 2])
    out = tmp_path / "r"
    assert _bench([str(tmp_path / "cut.pt"), good], out, "--attacks", "clean") == 1
    failed, ok = sorted(read_rows(str(out / "results.jsonl")), key=lambda r: r["status"])
    assert failed["status"] == "failed" and ok["status"] == "ok" and "re-train or re-download" in failed["error"]
    assert json.loads(json.dumps(failed)) == failed


def test_a_flipped_byte_in_a_plain_state_dict_is_refused_by_its_crc(good, tmp_path):
    """A plain state_dict (loaded with --arch) carries no checksum of ours: the zip record's CRC-32 is all that
    catches a byte flipped inside one of its tensors, and the refusal names the file."""
    state = load_checkpoint(good)["model"]
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)
    load_checkpoint(str(plain))  # intact: loads
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 10)
    raw = bytearray(plain.read_bytes())
    at = raw.find(state[name].numpy().tobytes()[:16])
    assert at > 0
    raw[at + 5] ^= 0x40
    flipped = tmp_path / "flipped-plain.pt"
    flipped.write_bytes(bytes(raw))
    assert isinstance(torch.load(flipped, weights_only=True), dict)  # torch.load alone reads it without a word
    with pytest.raises(CheckpointError, match=r"flipped-plain\.pt.*(CRC|damaged)"):
        load_checkpoint(str(flipped))
