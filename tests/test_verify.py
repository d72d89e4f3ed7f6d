"""Stored adversarial images and their replay: bench.run --save-adversarial, then python -m bench.verify."""
from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest
import torch

from bench import run as bench_run
from bench import verify
from bench.store.adversarial import sha256_file
from bench.store.rows import read_rows

pytestmark = pytest.mark.slow  # replays of trained models' stored images


@pytest.fixture(scope="module")
def saved(checkpoint, tmp_path_factory):
    """A tiny model (36% clean) under PGD and AutoAttack at 8/255 on 16 points, images kept."""
    ckpt = checkpoint(epochs=2, n_train=None, lr=0.05)
    out = tmp_path_factory.mktemp("adv") / "out"
    code = bench_run.main(["--models", ckpt, "--attacks", "pgd,autoattack", "--eps", "8/255", "--data", "synthetic",
                           "--n-examples", "16", "--device", "cpu", "--out", str(out), "--no-progress",
                           "--no-leaderboard", "--save-adversarial"])
    assert code == 0
    return ckpt, out


def _copy(saved, tmp_path):
    ckpt, out = saved
    dest = tmp_path / "out"
    shutil.copytree(out, dest)
    return ckpt, dest


def _tamper(out, change):
    """Apply change(images, clean) to the PGD row's images and write them back with the row's sha256 updated,
    as someone who wanted the file to pass the checksum would."""
    from zoo.data import load_dataset

    path = out / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    row = next(r for r in rows if r["attack"] == "pgd")
    file = out / row["adversarial"]["path"]
    x = load_dataset("synthetic").x_test[:16].float().div(255)
    torch.save(change(torch.load(file, weights_only=True), x), file)
    row["adversarial"]["sha256"] = sha256_file(str(file))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return row


def test_saved_images_are_robustbenchs_format_and_replay(saved, tmp_path, capsys):
    ckpt, out = _copy(saved, tmp_path)  # bench.verify records its outcome beside the rows
    rows = read_rows(str(out / "results.jsonl"))
    assert {r["attack"] for r in rows} == {"pgd", "autoattack"}
    for r in rows:
        ref = r["adversarial"]
        x = torch.load(out / ref["path"], weights_only=True)
        assert x.dtype == torch.float32 and list(x.shape) == ref["shape"] == [16, 3, 32, 32]
        assert 0 <= float(x.min()) and float(x.max()) <= 1
        assert sha256_file(str(out / ref["path"])) == ref["sha256"]
    assert any(r["clean_correct"] > r["robust_correct"] for r in rows)  # something to replay
    assert verify.main(["--results", str(out / "results.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("ok ") == 3 and "fooled points replay" in printed and "worst case" in printed
    # the external form: the same file against the checkpoint gives the row's bound
    pgd = next(r for r in rows if r["attack"] == "pgd")
    assert verify.main(["--models", ckpt, "--adversarial", str(out / pgd["adversarial"]["path"]), "--data",
                        "synthetic", "--eps", "8/255"]) == 0
    assert f"robust accuracy <= {100 * pgd['robust_acc']:.2f}%" in capsys.readouterr().out


@pytest.mark.parametrize("change, why", [
    (lambda adv, x: x, "counts as fooled in the row, but its image is classified right"),
    (lambda adv, x: torch.cat([(x[:1] + 9 / 255).clamp(0, 1), adv[1:]]), "point 0 lies outside the Linf ball"),
    (lambda adv, x: torch.cat([adv[:3], torch.full_like(adv[3:4], float("nan")), adv[4:]]), "point 3 holds NaN"),
])
def test_tampered_images_fail_with_the_row_and_the_point(saved, tmp_path, capsys, change, why):
    _, out = _copy(saved, tmp_path)
    _tamper(out, change)
    assert verify.main(["--results", str(out / "results.jsonl")]) == 1
    printed = capsys.readouterr()
    (line,) = [x for x in printed.out.splitlines() if x.startswith("FAILED")]
    assert "pgd Linf 8/255" in line and why in line, line
    assert "Traceback" not in printed.err


def test_a_changed_file_a_pickle_and_a_wrong_shape_are_one_line_each(saved, tmp_path, capsys):
    _, out = _copy(saved, tmp_path)
    rows = read_rows(str(out / "results.jsonl"))
    pgd = next(r for r in rows if r["attack"] == "pgd")
    file = out / pgd["adversarial"]["path"]
    torch.save(torch.zeros(16, 3, 32, 32), file)  # sha256 left as it was
    assert verify.main(["--results", str(out / "results.jsonl")]) == 1
    assert "sha256 differs from the row's" in capsys.readouterr().out

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Payload()))
    ckpt = saved[0]
    for path, why in ((evil, "not a tensor file torch can load safely"),):
        assert verify.main(["--models", ckpt, "--adversarial", str(path), "--data", "synthetic"]) == 1
        assert why in capsys.readouterr().out
    assert not (tmp_path / "PWNED").exists()
    wrong = tmp_path / "wrong.pt"
    torch.save(torch.zeros(16, 3, 16, 16), wrong)
    assert verify.main(["--models", ckpt, "--adversarial", str(wrong), "--data", "synthetic"]) == 1
    assert "shaped (16, 3, 16, 16)" in capsys.readouterr().out


def test_a_cached_row_without_images_gets_them_on_a_rerun_with_the_same_counts(saved, tmp_path):
    ckpt, _ = saved
    out = tmp_path / "out"
    args = ["--models", ckpt, "--attacks", "pgd", "--eps", "8/255", "--data", "synthetic", "--n-examples", "16",
            "--device", "cpu", "--out", str(out), "--no-progress", "--no-leaderboard"]
    assert bench_run.main(args) == 0
    (first,) = read_rows(str(out / "results.jsonl"))
    assert "adversarial" not in first
    assert bench_run.main(args + ["--save-adversarial"]) == 0
    rows = read_rows(str(out / "results.jsonl"))
    assert len(rows) == 2 and rows[1]["key"] == first["key"] and "adversarial" in rows[1]
    assert (rows[1]["clean_correct"], rows[1]["robust_correct"]) == (first["clean_correct"], first["robust_correct"])
    assert bench_run.main(args + ["--save-adversarial"]) == 0  # now cached, images and all
    assert len(read_rows(str(out / "results.jsonl"))) == 2
    assert verify.main(["--results", str(out / "results.jsonl")]) == 0


def test_the_model_page_shows_the_replay_and_a_gallery_of_fooled_points(saved, tmp_path):
    from bench.report.outputs import write_site

    _, out = _copy(saved, tmp_path)
    rows = read_rows(str(out / "results.jsonl"))
    site = write_site(rows, str(out))
    page = next((out / "site" / "models").glob("*.html")).read_text(encoding="utf-8")
    assert "images stored, not replayed yet" in page and "Adversarial examples" in page
    assert verify.main(["--results", str(out / "results.jsonl")]) == 0
    write_site(read_rows(str(out / "results.jsonl")), str(out))
    page = next((out / "site" / "models").glob("*.html")).read_text(encoding="utf-8")
    fooled = {r["attack"]: r["clean_correct"] - r["robust_correct"] for r in rows}
    for k in fooled.values():
        assert f"replayed: {k} of {k}" in page
    pngs = list((out / "site" / "models").glob("*-adv/*.png"))
    assert len(pngs) == 3 * sum(min(k, 4) for k in fooled.values())  # clean, adversarial, perturbation each
    assert os.path.dirname(site) == str(out / "site")


def test_the_site_copies_galleries_and_loads_no_model(saved, tmp_path, monkeypatch):
    """The galleries were drawn by bench.run beside the images: the site copies them with no model, no dataset
    and no torch.load at all; a gallery index that names a file outside its own form, or another row's images,
    is not shown, and bench.verify draws a gallery that is missing."""
    import bench.eval.loading
    from bench.eval.gallery import index_path
    from bench.report.outputs import write_site

    _, out = _copy(saved, tmp_path)
    rows = read_rows(str(out / "results.jsonl"))
    indexes = {r["key"]: index_path(str(out), r["key"]) for r in rows}
    fooled = {r["key"] for r in rows if r["robust_correct"] < r["clean_correct"]}
    assert fooled and all(os.path.isfile(indexes[k]) for k in fooled)

    def refuse(*a, **k):
        raise AssertionError("the site loaded a model or a tensor file")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(bench.eval.loading, "load_model_spec", refuse)
    write_site(rows, str(out))
    shown = sorted(p.name for p in (out / "site" / "models").glob("*-adv/*.png"))
    assert shown and all(p.split("-")[0] in indexes for p in shown)
    monkeypatch.undo()

    pgd = next(r for r in rows if r["attack"] == "pgd")
    index = json.loads(open(indexes[pgd["key"]]).read())
    forged = dict(index, items=[dict(index["items"][0], clean="../results.jsonl")])  # the rows, beside the images
    open(indexes[pgd["key"]], "w").write(json.dumps(forged))
    write_site(rows, str(out))
    page = next((out / "site" / "models").glob("*.html")).read_text(encoding="utf-8")
    assert "results.jsonl" not in "".join(p.name for p in (out / "site" / "models").rglob("*"))
    assert len(list((out / "site" / "models").glob("*-adv/" + pgd["key"] + "-*.png"))) == 0
    assert "Adversarial examples" in page  # AutoAttack's gallery is still there

    os.remove(indexes[pgd["key"]])
    assert verify.main(["--results", str(out / "results.jsonl")]) == 0
    assert json.loads(open(indexes[pgd["key"]]).read())["items"] == index["items"]  # drawn again, the same


def test_export_writes_the_external_evaluation_beside_robustbenchs_image_file(saved, tmp_path):
    """The claim's AutoAttack row kept its images: the export writes them as RobustBench asks (one .pt tensor the
    size of the test points) and the "New external evaluation(s)" issue that points at them."""
    from bench import export as bexport

    ckpt, out = _copy(saved, tmp_path)
    paths = bexport.export(ckpt, name="Sharp2026Tiny", out=str(tmp_path / "e"), results=str(out / "results.jsonl"),
                           dataset="cifar10", draft=True, authors="A. Author")  # 16 synthetic points: a draft
    row = next(r for r in read_rows(str(out / "results.jsonl")) if r["attack"] == "autoattack")
    images = torch.load(paths["adversarial"], weights_only=True)
    assert torch.equal(images, torch.load(out / row["adversarial"]["path"], weights_only=True))
    text = open(paths["external_evaluation"], encoding="utf-8").read()
    assert text.startswith("[New evaluation] Sharp2026Tiny")
    for field in ("## Target model", "**Model identifier(s):** Sharp2026Tiny", "**Leaderboard(s):** CIFAR-10, Linf",
                  "## New evaluation", "**Link to adversarial images:**", "**Author(s):** A. Author",
                  f"**Robust accuracy:** {100 * row['robust_acc']:.2f}%", "**Description of the method used:**",
                  sha256_file(paths["adversarial"]), "python -m bench.verify"):
        assert field in text, field
    # the file replays against the checkpoint to the number the text states
    assert verify.main(["--models", ckpt, "--adversarial", paths["adversarial"], "--data", "synthetic"]) == 0


def test_a_file_larger_than_any_test_set_is_refused_unread(tmp_path):
    from bench.store.adversarial import AdversarialError, load_images

    big = tmp_path / "big.pt"
    torch.save(torch.zeros(16, 3, 32, 32), big)
    with pytest.raises(AdversarialError, match="more than any test set's images"):
        load_images(str(big), max_bytes=1024)
