"""Official CIFAR-10-C: fetched once (resumably) from robustbench's Zenodo record, read as robustbench reads it."""
import hashlib
import io
import os
import tarfile

import numpy as np
import pytest
import torch

from bench.corruptions import official as oc
from bench import run as bench_run
from bench.corruptions.generator import CORRUPTIONS, official_set
from bench.store.rows import read_rows

pytestmark = pytest.mark.slow  # the official CIFAR-10-C files read as robustbench reads them


def _official_files(folder, n=6, seed=0):
    """Official layout with severities that differ from each other and labels that differ from the test set's."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    labels = np.concatenate([rng.integers(0, 10, n)] * 5)
    for name in CORRUPTIONS:
        sev = [np.full((n, 32, 32, 3), 40 * s + i, np.uint8) for i, s in enumerate(range(1, 6))]
        np.save(os.path.join(folder, f"{name}.npy"), np.concatenate(sev))
    np.save(os.path.join(folder, "labels.npy"), labels)
    return labels


def test_reading_matches_robustbenchs_loader_severity_by_severity(tmp_path):
    """robustbench's loader assumes the official 10000 images per severity, so this file has the official shape
    (50000, 32, 32, 3); it is sparse on disk: only the images read are written."""
    from bench.deps import import_autoattack

    import_autoattack()
    from robustbench.data import load_cifar10c

    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    arr = np.lib.format.open_memmap(folder / "fog.npy", mode="w+", dtype=np.uint8, shape=(50000, 32, 32, 3))
    rng = np.random.default_rng(0)
    for s in range(1, 6):
        arr[(s - 1) * 10000:(s - 1) * 10000 + 4] = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    arr.flush()
    del arr
    labels = np.tile(rng.integers(0, 10, 10000), 5)  # the official labels repeat per severity
    np.save(folder / "labels.npy", labels)
    seen = []
    for s in range(1, 6):
        imgs, lab = official_set(str(folder), "fog", s, 4)
        x_rb, y_rb = load_cifar10c(4, s, str(tmp_path), corruptions=["fog"])
        assert torch.equal(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255, x_rb)
        assert np.array_equal(lab, y_rb.numpy()) and np.array_equal(lab, labels[:4])
        seen.append(imgs)
    assert not any(np.array_equal(seen[0], other) for other in seen[1:])  # each severity its own block


def test_official_source_offline_is_one_line_naming_both_ways_out(tmp_path, monkeypatch, capsys):
    import requests

    def offline(*a, **k):
        raise requests.ConnectionError("no network")

    monkeypatch.setattr(requests, "get", offline)
    (tmp_path / "m.pt").write_bytes(b"")  # a file is there: the refusal is the corruption files', before any load
    code = bench_run.main(["--models", str(tmp_path / "m.pt"), "--attacks", "corruptions", "--corruptions-source", "official",
                           "--data", "synthetic", "--data-dir", str(tmp_path), "--n-examples", "4", "--device", "cpu",
                           "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--corruptions-dir" in err[0] and "--corruptions-source regenerated" in err[0] and "ConnectionError" in err[0]


class _FakeZenodo:
    """requests.get for robustbench's record and a tar served with HTTP ranges; can break after some bytes."""

    def __init__(self, tar_bytes, break_after=None):
        self.tar, self.break_after, self.ranges = tar_bytes, break_after, []

    def __call__(self, url, stream=False, timeout=None, headers=None):
        fake = self

        class Response:
            status_code = 200

            def __enter__(self):
                return self

            def __exit__(self, *a):
                return False

            def raise_for_status(self):
                pass

            def json(self):
                return {"files": [{"key": "CIFAR-10-C.tar", "size": len(fake.tar),
                                   "checksum": "md5:" + hashlib.md5(fake.tar).hexdigest(),
                                   "links": {"self": "https://zenodo.example/CIFAR-10-C.tar"}}]}

            def iter_content(self, chunk_size):
                start = int(headers["Range"].split("=")[1].rstrip("-")) if headers else 0
                fake.ranges.append(start)
                sent = 0
                for i in range(start, len(fake.tar), 1000):
                    if fake.break_after is not None and sent >= fake.break_after:
                        fake.break_after = None
                        raise ConnectionError("connection reset")
                    yield fake.tar[i:i + 1000]
                    sent += 1000

        r = Response()
        if headers and "Range" in headers:
            r.status_code = 206
        return r


def test_official_files_download_resumes_after_a_broken_connection(tmp_path, monkeypatch):
    import requests

    src = tmp_path / "src" / "CIFAR-10-C"
    _official_files(src, n=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        t.add(src, arcname="CIFAR-10-C")
    fake = _FakeZenodo(buf.getvalue(), break_after=20_000)
    monkeypatch.setattr(requests, "get", fake)
    dest = tmp_path / "data" / "CIFAR-10-C"
    with pytest.raises(oc.CorruptionsSourceError):
        oc.fetch_official(str(dest))
    part = tmp_path / "data" / "CIFAR-10-C.tar.part"
    have = part.stat().st_size
    assert 0 < have < len(fake.tar) and not dest.exists()
    assert oc.fetch_official(str(dest)) == str(dest)
    assert fake.ranges == [0, have]  # the second try asked only for the bytes it did not have
    assert oc.complete(str(dest)) and not part.exists()
    for name in CORRUPTIONS:
        assert np.array_equal(np.load(dest / f"{name}.npy"), np.load(src / f"{name}.npy"))
    calls = len(fake.ranges)
    oc.fetch_official(str(dest))  # complete: nothing fetched again
    assert len(fake.ranges) == calls


def test_official_rows_use_the_files_labels(tmp_path, checkpoint):
    folder = tmp_path / "CIFAR-10-C"
    _official_files(folder, n=6)
    ckpt = checkpoint()
    out = tmp_path / "r"
    assert bench_run.main(["--models", ckpt, "--attacks", "corruptions", "--corruptions-source", "official",
                           "--corruptions-dir", str(folder), "--data", "synthetic", "--n-examples", "6",
                           "--device", "cpu", "--out", str(out), "--no-progress", "--no-leaderboard"]) == 0
    (row,) = read_rows(str(out / "results.jsonl"))
    assert row["corruption_source"] == "official" and row["attack_config"]["source"] == "official"
    from zoo.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(ckpt)).eval()
    labels = np.load(folder / "labels.npy")
    for s in range(1, 6):  # each cell is the model's accuracy on that severity's images against the files' labels
        imgs = np.load(folder / "fog.npy")[(s - 1) * 6:s * 6]
        with torch.no_grad():
            pred = model(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()
        assert row["corruption_severity_acc"][f"fog/{s}"] == pytest.approx((pred == labels[:6]).mean())
