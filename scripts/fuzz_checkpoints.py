"""Fuzz the checkpoint loader: damaged, hostile and malformed files must each give a one-line error or a correct load.

  python scripts/fuzz_checkpoints.py --n 5000           makes N files from a fresh tiny checkpoint and loads each
  python scripts/fuzz_checkpoints.py --n 300 --seed 1   another deterministic set

Every file goes through bench's own loader (`bench.eval.loading.load_model_spec`, what `bench.run` calls). An outcome is
`error` (one of the errors bench.run turns into a failed row, with a one-line message), `loaded` (and, for a file
that is a damaged copy of the real checkpoint, weights bitwise equal to the original: a damaged file must never
yield numbers), or `crash` (anything else escaped, or a wrong load). tests/test_faults.py runs it in CI;
scripts/faults.py runs it at a larger size.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402

KINDS = ("random_bytes", "random_with_magic", "truncated", "byte_flips", "wrong_objects", "wrong_arch",
         "wrong_tensors", "nan_weights", "pickled_code", "legacy_format", "hostile")

# payloads in the forms the writers escape: Python (closing a docstring), HTML, markdown, CSV formula, shell
DOCSTRING_ESCAPE = 'standard"""\nimport os; os.system("touch MARKER")\n"""'
HTML = '<img src=x onerror="document.title=1">'
MD = "a|b\n# heading"
CSV = "=cmd|' /C calc'!A0"


def _save(obj, path, legacy=False):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)


class Evil:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _wrong_objects(rng, good: dict) -> list:
    sd = good["model"]
    return [
        [1, 2, 3], "a string", 42, None, 3.5, {"model": "not weights"}, {1: torch.zeros(2)},
        {**good, "model": {**sd, 7: torch.zeros(1)}}, {**good, "arch": 3}, {**good, "num_classes": -1},
        {**good, "num_classes": True}, {**good, "num_classes": 10 ** 9}, {**good, "normalization": [0.5]},
        {**good, "normalization": {"mean": [0.5] * 3, "std": ["x"] * 3}},
        {**good, "normalization": {"mean": [0.5] * 3, "std": [float("nan")] * 3}},
        {**good, "normalization": {"mean": [0.5] * 2, "std": [0.2] * 2}},
        {**good, "arch": "no_such_arch"}, {**good, "arch": "resnet18"}, {**good, "model": {}},
        {**good, "model": sd, "weights_sha256": 12345}, {**good, "weights_sha256": "0" * 64},
        {"state_dict": [torch.zeros(3)]}, {"x": torch.zeros(3)},
        {k: v for k, v in good.items() if k != "arch"}, torch.zeros(4), (torch.ones(2), "x"),
        {**good, "num_classes": 100},
    ]


def _deeply_nested(path: str, template: str) -> None:
    """A torch zip whose pickle is {'model': [[[...]]], 'weights_sha256': 'x'} nested 100000 deep: torch.save
    cannot write it (its pickler recurses), but the unpickler builds it iteratively and a naive walker overflows."""
    depth = 100_000
    deep = b"]" * depth + b"a" * (depth - 1)
    pkl = (b"\x80\x02}(X\x05\x00\x00\x00model" + deep + b"X\x0e\x00\x00\x00weights_sha256X\x01\x00\x00\x00xu.")
    with zipfile.ZipFile(template) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = pkl if item.filename.endswith("data.pkl") else src.read(item.filename)
            dst.writestr(item, data)


def edited(good_path: str, path: str, **fields) -> str:
    """The good checkpoint with metadata fields replaced (a__b names ckpt[a][b]); weights and checksum untouched."""
    ck = torch.load(good_path, weights_only=True)
    for dotted, value in fields.items():
        target = ck
        *parents, last = dotted.split("__")
        for part in parents:
            target = target[part]
        target[last] = value
    _save(ck, path)
    return path


def zip_bomb(good_path: str, path: str, pad_bytes: int) -> str:
    """The good checkpoint with data.pkl deflated and padded with zeros after the pickle's STOP: small on disk,
    pad_bytes when inflated."""
    with zipfile.ZipFile(good_path) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if not info.filename.endswith("data.pkl"):
                dst.writestr(info, data)
                continue
            zi = zipfile.ZipInfo(info.filename)
            zi.compress_type = zipfile.ZIP_DEFLATED
            with dst.open(zi, "w", force_zip64=True) as f:
                f.write(data)
                for _ in range(pad_bytes >> 20):
                    f.write(bytes(1 << 20))
    return path


# each hostile input of the table: (what it is, how to make it from a good checkpoint at a path)
HOSTILE = {
    "recipe closing a docstring": lambda g, p: edited(g, p, recipe=DOCSTRING_ESCAPE),
    "symlink to /dev/zero": lambda g, p: os.symlink("/dev/zero", p) or p,
    "FIFO named *.pt": lambda g, p: os.mkfifo(p) or p,
    "symlink loop": lambda g, p: os.symlink(p, p) or p,
    "directory named *.pt": lambda g, p: os.mkdir(p) or p,
    "deflated data.pkl padded with 64 MiB of zeros": lambda g, p: zip_bomb(g, p, 64 << 20),
    "dataset a string": lambda g, p: edited(g, p, dataset="cifar10"),
    "config a list": lambda g, p: edited(g, p, config=[1, 2]),
    "recipe a list": lambda g, p: edited(g, p, recipe=["standard"]),
    "dataset.spec a list": lambda g, p: edited(g, p, dataset__spec=["cifar10"]),
    "NaN rho": lambda g, p: edited(g, p, config__rho=float("nan")),
    "std = 0": lambda g, p: edited(g, p, normalization__std=[0.0, 0.2, 0.2]),
    "seed a shell string": lambda g, p: edited(g, p, seed="0; rm -rf /"),
    "versions holding HTML and newlines": lambda g, p: edited(g, p, versions={"torch": HTML + "\n" * 3}),
    "history holding strings": lambda g, p: edited(g, p, history=[{"epoch": "<script>"}]),
    "metrics infinite": lambda g, p: edited(g, p, metrics={"clean_test_acc": float("inf")}),
    "config.eps holding HTML": lambda g, p: edited(g, p, config__eps=HTML),
    "config.eps holding | and a newline": lambda g, p: edited(g, p, config__eps="8/255|x\ny"),
    "arch holding a formula": lambda g, p: edited(g, p, arch=CSV),
}


def make_cases(good_path: str, folder: str, n: int, seed: int = 0, marker: str | None = None) -> list[dict]:
    """n fuzz files under folder, each {path, kind, arch, same_as_good}; the same (n, seed) gives the same files."""
    from zoo.checkpoint import load_checkpoint, seal
    from zoo.models import create_model

    rng = np.random.default_rng(seed)
    raw = open(good_path, "rb").read()
    good = load_checkpoint(good_path)
    sd = good["model"]
    objects = _wrong_objects(rng, {k: v for k, v in good.items() if k != "weights_sha256"})
    big = create_model("preact_resnet18", good["num_classes"], [0.5] * 3, [0.25] * 3).state_dict()
    marker = marker or os.path.join(folder, "PWNED")
    cases = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        path = os.path.join(folder, f"{i:05d}-{kind}.pt")
        arch, same = None, False
        if kind == "random_bytes":
            length = int(np.exp(rng.uniform(0, np.log(200_000))))
            open(path, "wb").write(rng.bytes(length))
        elif kind == "random_with_magic":
            head = [b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95", b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."][i % 4]
            open(path, "wb").write(head + rng.bytes(int(rng.integers(1, 5000))))
        elif kind == "truncated":
            open(path, "wb").write(raw[:int(rng.integers(0, len(raw)))])
            same = True
        elif kind == "byte_flips":
            b = bytearray(raw)
            for pos in rng.integers(0, len(b), size=int(rng.integers(1, 9))):
                b[pos] ^= int(rng.integers(1, 256))
            open(path, "wb").write(bytes(b))
            same = True
        elif kind == "wrong_objects":
            which = (i // len(KINDS)) % (len(objects) + 1)
            if which == len(objects):
                _save({"model": 0}, path)
                _deeply_nested(path + ".deep", path)
                os.replace(path + ".deep", path)
            else:
                _save(objects[which], path)
        elif kind == "wrong_arch":
            variant = (i // len(KINDS)) % 4
            if variant == 0:  # a zoo checkpoint naming another architecture, checksum recomputed
                _save(seal({**good, "arch": "preact_resnet18"}), path)
            elif variant == 1:
                _save(seal({**good, "model": big}), path)
            elif variant == 2:  # a plain state_dict loaded with the wrong --arch
                _save(big, path)
                arch = "sharp_tiny"
            else:
                _save({"state_dict": sd}, path)
                arch = "preact_resnet18"
        elif kind == "wrong_tensors":
            name = list(sd)[int(rng.integers(len(sd)))]
            t = sd[name]
            variant = (i // len(KINDS)) % 6
            if variant == 0:
                bad = torch.zeros(t.numel() + 1)
            elif variant == 1:
                bad = t.reshape(-1)
            elif variant in (2, 3):
                bad = t.to([torch.int64, torch.float16, torch.bool, torch.complex64][int(rng.integers(4))])
            else:
                bad = t.to(torch.float64)
            new = seal({**good, "model": {**sd, name: bad}})
            if variant == 3:
                new = {k: v for k, v in new.items() if k != "weights_sha256"}  # an unsealed file
            _save(new, path)
        elif kind == "nan_weights":
            name = [k for k, v in sd.items() if v.is_floating_point()][int(rng.integers(4))]
            _save(seal({**good, "model": {**sd, name: torch.full_like(sd[name], float("nan"))}}), path)
        elif kind == "pickled_code":
            payload = [Evil(marker), {"model": Evil(marker)}, {**good, "history": Evil(marker)},
                       {**good, "model": {**sd, "x": np.zeros(2)}}][(i // len(KINDS)) % 4]
            _save(payload, path)
        elif kind == "legacy_format":
            same = (i // len(KINDS)) % 2 == 0
            _save(good if same else {"model": Evil(marker)}, path, legacy=True)
        elif kind == "hostile":
            make = list(HOSTILE.values())[(i // len(KINDS)) % len(HOSTILE)]
            make(good_path, path)
        cases.append({"path": path, "kind": kind, "arch": arch, "same_as_good": same})
    return cases


def check_case(case: dict, good_sd: dict) -> tuple[str, str]:
    """(outcome, detail): outcome is 'error', 'loaded' or 'crash'."""
    from bench.eval.loading import LOAD_ERRORS, load_model_spec

    try:
        lm = load_model_spec(case["path"], arch=case["arch"])
        if case["kind"] == "hostile":
            return "crash", "a hostile file loaded"
    except LOAD_ERRORS as e:
        msg = str(e)
        if "\n" in msg or not msg.strip():
            return "crash", f"error message is not one line: {msg[:200]!r}"
        return "error", msg
    except Exception as e:  # noqa: BLE001 - exactly what this fuzzer hunts
        return "crash", f"{type(e).__name__}: {str(e)[:200]}"
    if case["same_as_good"]:
        sd = lm.model.state_dict()
        if set(sd) != set(good_sd) or not all(torch.equal(sd[k], good_sd[k]) for k in sd):
            return "crash", "a damaged copy loaded with weights that differ from the original"
    return "loaded", lm.meta.name


def run_fuzz(n: int, seed: int = 0, folder: str | None = None) -> dict:
    """Train a tiny checkpoint, make n cases, load each; returns counts per (kind, outcome) and the crashes."""
    from zoo.checkpoint import load_checkpoint
    from zoo.config import TrainConfig
    from zoo.train import train

    with tempfile.TemporaryDirectory() as tmp:
        folder = folder or tmp
        good = train(TrainConfig(arch="sharp_tiny", data="synthetic", epochs=1, n_train=64, batch_size=32,
                                 device="cpu", out=os.path.join(folder, "good")), progress=False)
        marker = os.path.join(folder, "PWNED")
        cases = make_cases(good, folder, n, seed, marker)
        good_sd = load_checkpoint(good)["model"]
        counts, crashes = Counter(), []
        for case in cases:
            outcome, detail = check_case(case, good_sd)
            counts[(case["kind"], outcome)] += 1
            if outcome == "crash":
                crashes.append((case["path"], case["kind"], detail))
        return {"n": n, "counts": counts, "crashes": crashes, "code_ran": os.path.exists(marker)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    res = run_fuzz(a.n, a.seed)
    print(f"{'kind':18s} {'error':>6s} {'loaded':>6s} {'crash':>6s}")
    for kind in KINDS:
        print(f"{kind:18s} " + " ".join(f"{res['counts'][(kind, o)]:6d}" for o in ("error", "loaded", "crash")))
    for path, kind, detail in res["crashes"][:20]:
        print(f"CRASH {kind} {path}: {detail}")
    print(f"{a.n} files, {len(res['crashes'])} crashes, pickled code executed: {res['code_ran']}")
    return 1 if res["crashes"] or res["code_ran"] else 0


if __name__ == "__main__":
    sys.exit(main())
