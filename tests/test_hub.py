"""Hugging Face Hub folders: bench.export --hf, the card's model-index read back by huggingface_hub, the folder
loaded by timm from the local Hugging Face cache offline, `--models hf-hub:ORG/NAME` rows equal to the .pt's, the
refusals, and hostile row text in a card."""
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow  # Hub folders of trained models, round trips through timm and bench.run

REV = "0123456789abcdef0123456789abcdef01234567"
BENCH = ["--attacks", "clean,pgd", "--n-examples", "32", "--pgd-steps", "3", "--no-progress"]


def run(*args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env=dict(os.environ, PYTHONWARNINGS="ignore", **(env or {})))


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def hub_cache(root, folder, repo):
    """The folder laid out as the local Hugging Face cache holds a download: models--ORG--NAME/snapshots/<rev>/,
    refs/main naming the revision."""
    base = os.path.join(root, "models--" + repo.replace("/", "--"))
    shutil.copytree(folder, os.path.join(base, "snapshots", REV))
    os.makedirs(os.path.join(base, "refs"))
    with open(os.path.join(base, "refs", "main"), "w") as f:
        f.write(REV)
    return {"HF_HUB_CACHE": str(root), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def models(smoke_study, checkpoint, tmp_path_factory):
    """A CIFAR classic (the smoke study's standard sharp_small, on digits) and a timm architecture (timm's
    test_efficientnet, trained here on synthetic data), each with clean and PGD rows from bench.run."""
    from bench.run import main as bench_run

    tmp = tmp_path_factory.mktemp("hub")
    _, zoo, _ = smoke_study
    classic = glob.glob(str(zoo / "sharp_small-standard-*.pt"))[0]
    timm_ckpt = checkpoint(arch="test_efficientnet", n_train=256, lr=0.05)
    out = {}
    for kind, ckpt, data in (("classic", classic, "digits"), ("timm", timm_ckpt, "synthetic")):
        bench = tmp / f"rows-{kind}"
        assert bench_run(["--models", ckpt, "--data", data, *BENCH, "--out", str(bench), "--no-leaderboard"]) == 0
        out[kind] = {"ckpt": ckpt, "data": data, "results": str(bench / "results.jsonl"), "tmp": tmp}
    return out


def export(*argv):
    """bench.export in this process (the runs that need the Hub's environment variables are subprocesses)."""
    from bench.export import main

    return main([str(a) for a in argv])


@pytest.mark.parametrize("kind", ["classic", "timm"])
def test_hub_folder_round_trip(models, kind, tmp_path):
    import torch
    from huggingface_hub import ModelCard

    m = models[kind]
    folder, repo = tmp_path / "folder", f"sharp-lab/{kind}-model"
    assert export(m["ckpt"], "--hf", folder, "--repo-id", repo, "--results", m["results"], "--license", "mit") == 0
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors", "sharpbench.json"]
    rows = {r["key"]: r for r in read(m["results"]) if r["status"] == "ok"}

    # the card: parsed by huggingface_hub; every metric of its model-index is a row's value
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "mit" and card.data.pipeline_tag == "image-classification"
    assert (card.data.library_name == "timm") == (kind == "timm")
    assert ("import zoo.models" in card.text) == (kind == "classic")
    results = card.data.eval_results
    keys = [(e.dataset_name, e.metric_type, e.metric_args.get("threat_model"), e.metric_args.get("eps"))
            for e in results]
    assert len(keys) == len(set(keys)) and {k[1] for k in keys} == {"accuracy", "robust_accuracy"}
    for e in results:
        row = rows[e.metric_args["row_key"]]
        want = row["clean_acc"] if e.metric_type == "accuracy" else row["robust_acc"]
        assert e.metric_value == want and e.verified is False and e.task_type == "image-classification"
        assert e.dataset_split == "test" and f"n={row['n']}" in e.metric_name
        if e.metric_type == "robust_accuracy":
            assert e.metric_args["threat_model"] == row["norm"] and e.metric_args["eps"] == row["eps"]
    record = json.loads((folder / "sharpbench.json").read_text())
    assert {r["key"] for r in record["rows"]} == set(rows) and record["training"]["arch"]

    # timm loads the folder offline from the local Hugging Face cache: the checkpoint's logits, bit for bit
    env = hub_cache(tmp_path / "cache", folder, repo)
    check = ("import sys, torch, timm\n" + ("import zoo.models\n" if kind == "classic" else "") +
             f"net = timm.create_model({'hf-hub:' + repo!r}, pretrained=True).eval()\n"  # timm's own: no zoo
             "from zoo.checkpoint import load_checkpoint, model_from_checkpoint\n"
             f"ck = {m['ckpt']!r}\n"
             "ours = model_from_checkpoint(load_checkpoint(ck), ck).eval()\n"
             "x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))\n"
             "mean = torch.tensor(net.pretrained_cfg['mean']).view(1, -1, 1, 1)\n"
             "std = torch.tensor(net.pretrained_cfg['std']).view(1, -1, 1, 1)\n"
             "with torch.no_grad():\n"
             "    print(torch.equal(net((x - mean) / std), ours(x)), net.pretrained_cfg['num_classes'])\n")
    res = run("-c", check, env=env)
    assert res.returncode == 0 and res.stdout.split()[0] == "True", res.stderr[-2000:]

    # bench.run on hf-hub:ORG/NAME, offline: the .pt's rows, recognised as the same weights
    res = run("-m", "bench.run", "--models", f"hf-hub:{repo}", "--data", m["data"], *BENCH, "--out",
              str(tmp_path / "hub"), "--save-adversarial", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    (page,) = (tmp_path / "hub" / "site" / "models").glob("*.html")  # the model page names its hash for what it is
    assert "<th>weights sha256</th>" in page.read_text() and "no checksum" not in page.read_text()
    res = run("-m", "bench.verify", "--results", str(tmp_path / "hub" / "results.jsonl"), env=env)
    assert res.returncode == 0 and "fooled points replay" in res.stdout, res.stdout + res.stderr  # by hf-hub: too
    theirs = {r["attack"]: r for r in read(tmp_path / "hub" / "results.jsonl")}
    for r in rows.values():
        h = theirs[r["attack"]]
        assert (h["clean_acc"], h["robust_acc"], h["points"]) == (r["clean_acc"], r["robust_acc"], r["points"])
        assert h["weights_sha256"] == r["weights_sha256"]
        assert h["weights_sha256"] == r["weights_sha256"] and h["hf_repo"] == repo and h["hf_revision"] == REV
    assert torch.load(m["ckpt"], weights_only=True)["weights_sha256"] == h["weights_sha256"]
    check_folder_before_the_push(m, folder, rows, tmp_path)
    # one trained model, read twice: two models on the boards, one seed of its configuration everywhere
    from bench.report.results import Results
    from bench.report.study_report import per_model
    from bench.report.web.pages import models as site_models, sections

    both = read(m["results"]) + list(theirs.values())
    res = Results.of(both)
    assert len({r["model_id"] for r in both}) == 2 and len({g["model"] for g in res.groups.values()}) == 1
    assert len(per_model(res, [])) == 1
    for section in sections(res, site_models(both, {})):
        assert [g["seeds"] for g in section["groups"]] == [[h["train_seed"]]] and len(section["lines"]) == 2
    if kind == "classic":  # bench.export reads hf-hub: too: the training record its sharpbench.json ships (a digits
        # model: refused for RobustBench in one line), and the weights RobustBench would load are the checkpoint's
        res = run("-m", "bench.export", f"hf-hub:{repo}", "--name", "Smith2026Sharp", "--out", str(tmp_path / "rb"),
                  "--results", str(tmp_path / "hub" / "results.jsonl"), "--draft", env=env)
        assert res.returncode == 2 and "trained on digits, not a RobustBench dataset" in res.stderr, res.stderr
        assert not (tmp_path / "rb").exists()
        same = ("import torch\n"
                "from bench.submit.package import hub_source\n"
                "from zoo.checkpoint import load_checkpoint, model_from_checkpoint\n"
                f"desc, net, mid = hub_source({'hf-hub:' + repo!r})\n"
                f"ours = model_from_checkpoint(load_checkpoint({m['ckpt']!r}), {m['ckpt']!r}).state_dict()\n"
                "theirs = net.state_dict()\n"
                "print(theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in ours),"
                " desc['dataset']['spec'])\n")
        res = run("-c", same, env=env)
        assert res.returncode == 0 and res.stdout.split()[-2:] == ["True", "digits"], res.stderr[-2000:]
    # published.jsonl beside the .pt's rows: its site links the card
    from bench.site import main as site

    assert site(["--results", m["results"]]) == 0
    pages = glob.glob(os.path.join(os.path.dirname(m["results"]), "site", "models", "*.html"))
    assert any(f"https://huggingface.co/{repo}" in open(p).read() for p in pages)


def check_folder_before_the_push(m, folder, rows, tmp_path):
    """The exported folder, offline and never pushed: bench.run on hf-dir:DIR with no --data (sharpbench.json names
    the data) gives the .pt's rows point for point; the card's timm-only route, run as printed from the folder's
    parent, gives the checkpoint's logits; the card's bench.run line runs as printed there (its attacks narrowed to
    clean on 16 points by arguments appended after it, which argparse lets override)."""
    import re

    res = run("-m", "bench.run", "--models", f"hf-dir:{folder}", *BENCH, "--out", str(tmp_path / "dir"),
              env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    theirs = {r["attack"]: r for r in read(tmp_path / "dir" / "results.jsonl")}
    for r in rows.values():
        h = theirs[r["attack"]]
        assert (h["data"], h["points"], h["weights_sha256"]) == (r["data"], r["points"], r["weights_sha256"])
    card = (folder / "README.md").read_text()
    route = re.findall(r"```python\n(.*?)```", card, re.S)[0]
    check = ("import torch\n"
             "images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))\n" + route +
             "from zoo.checkpoint import load_checkpoint, model_from_checkpoint\n"
             f"ours = model_from_checkpoint(load_checkpoint({m['ckpt']!r}), {m['ckpt']!r}).eval()\n"
             "with torch.no_grad():\n"
             "    print(torch.equal(net((images - mean) / std), ours(images)))\n")
    res = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=folder.parent,
                         timeout=600, env=dict(os.environ, PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1"))
    assert res.returncode == 0 and res.stdout.split()[-1] == "True", res.stderr[-2000:]
    (line,) = [ln for ln in card.splitlines() if ln.startswith("python -m bench.run --models hf-dir:")]
    res = subprocess.run(["bash", "-c", line.replace("python", shlex.quote(sys.executable), 1)
                          + f" --attacks clean --n-examples 16 --no-progress --out {shlex.quote(str(tmp_path / 'card'))}"],
                         capture_output=True, text=True, cwd=folder.parent, timeout=600,
                         env=dict(os.environ, PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1", PYTHONPATH=ROOT))
    assert res.returncode == 0 and "1 rows added" in res.stdout, res.stderr[-2000:]


def refused(capsys, *argv):
    from bench.export import main

    code = main(list(argv))
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("refused: "), err
    return err[0]


def test_hub_refusals(models, tmp_path, capsys, monkeypatch):
    from bench.store.rows import append_row
    from zoo.checkpoint import sha256_file

    m = models["classic"]
    ck = m["ckpt"]
    assert "is not shaped ORG/NAME" in refused(capsys, ck, "--hf", str(tmp_path / "a"), "--repo-id", "not/a/repo",
                                               "--results", m["results"])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "no row of these weights" in refused(capsys, ck, "--hf", str(tmp_path / "a"), "--results", str(empty))
    row = next(r for r in read(m["results"]) if r["attack"] == "clean")
    failed = tmp_path / "failed" / "results.jsonl"
    append_row(str(failed), {**{k: row[k] for k in ("key", "model", "model_id", "path", "data", "n", "attack")},
                             "status": "failed", "error": "boom", "time": row["time"]})
    assert "every row of these weights failed (boom)" in refused(capsys, ck, "--hf", str(tmp_path / "a"),
                                                                   "--results", str(failed))
    other = tmp_path / "other" / "results.jsonl"
    append_row(str(other), {**row, "model_id": "f" * 64, "weights_sha256": "e" * 64})
    assert "computed on other weights" in refused(capsys, ck, "--hf", str(tmp_path / "a"), "--results", str(other))
    assert not os.path.exists(tmp_path / "a")  # nothing written by a refusal

    from bench.export import main

    assert main([ck, "--hf", str(tmp_path / "b"), "--results", m["results"]]) == 0
    t = models["timm"]
    assert "already holds another model" in refused(capsys, t["ckpt"], "--hf", str(tmp_path / "b"), "--results",
                                                    t["results"])
    assert main([t["ckpt"], "--hf", str(tmp_path / "b"), "--results", t["results"], "--force"]) == 0
    assert json.loads((tmp_path / "b" / "sharpbench.json").read_text())["checkpoint_sha256"] == sha256_file(t["ckpt"])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    assert "not a sharpbench export" in refused(capsys, ck, "--hf", str(tmp_path / "c"), "--results", m["results"])

    # --push with no token: one line, after the folder is written
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    line = refused(capsys, ck, "--hf", str(tmp_path / "d"), "--repo-id", "sharp-lab/x", "--results", m["results"],
                   "--push")
    assert "no Hugging Face token" in line and os.path.exists(tmp_path / "d" / "model.safetensors")


HOSTILE = "evil | <img src=x onerror=alert(1)> [click](http://x.example) \u202egnp.exe `x` ---\nlicense: pwned\n# Heading"


def test_hostile_row_text_stays_text_in_the_card(models, tmp_path):
    """A row's strings (its data, path, AutoAttack check message) with markdown, YAML, HTML and a bidi control:
    the front matter parses to the same keys, and the body renders no markup the row did not have."""
    import markdown
    import yaml
    from huggingface_hub import ModelCard

    from bench.store.rows import append_row

    m = models["classic"]
    hostile = tmp_path / "hostile" / "results.jsonl"
    for r in read(m["results"]):
        append_row(str(hostile), {**r, "data": "npz:/x/" + HOSTILE, "path": HOSTILE,
                                  "aa_checks": {"randomized": HOSTILE}})
    for name, results in (("plain", m["results"]), ("hostile", str(hostile))):
        assert export(m["ckpt"], "--hf", tmp_path / f"card-{name}", "--results", results) == 0
    cards = {n: (tmp_path / f"card-{n}" / "README.md").read_text() for n in ("plain", "hostile")}
    meta = {n: yaml.safe_load(c.split("---\n", 2)[1]) for n, c in cards.items()}
    assert meta["hostile"].keys() == meta["plain"].keys() and meta["hostile"]["license"] == "other"
    assert "\u202e" not in cards["hostile"]
    card = ModelCard.load(tmp_path / "card-hostile" / "README.md")
    assert len(card.data.eval_results) == len(ModelCard.load(tmp_path / "card-plain" / "README.md").data.eval_results)
    html = {n: markdown.markdown(c.split("---\n", 2)[2], extensions=["tables", "fenced_code"]) for n, c in cards.items()}
    for tag in ("<img", "<a ", "<h1", "<h2", "<table", "<code", "<pre"):
        assert html["hostile"].count(tag) == html["plain"].count(tag), tag
    assert "&lt;img" in html["hostile"]  # the row's text, shown as text
