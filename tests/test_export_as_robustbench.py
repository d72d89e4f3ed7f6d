"""The export against copies of RobustBench's own files (tests/data/robustbench/, origin in ORIGIN.md): what a
maintainer would otherwise have to edit by hand."""
import csv
import json
import os
import re

import pytest

from bench import export as bexport
from bench.defaults import RB_LEADERBOARDS
from bench.submit import rules, source
from test_export import (PAPER, RB_FILES, _autoattack_row, _corruption_row, _write_row,  # noqa: F401 - fixtures
                         timm_ckpt, timm_ckpts)

pytestmark = pytest.mark.slow  # RobustBench exports of timm models

RB = RB_FILES


def _rb(name):
    return os.path.join(RB, name)


def _names():
    with open(_rb("model_zoo_names.tsv")) as f:
        return [(r["dataset"], r["threat_model"], r["name"]) for r in csv.DictReader(f, delimiter="\t")]


def test_every_name_robustbench_uses_is_accepted_and_unsafe_names_are_not():
    names = _names()
    assert len(names) > 150 and sum("-" in n for _, _, n in names) > 40  # the copy holds the hyphenated names
    for _, _, name in names:
        assert rules.unsafe_name(name) == [] and rules.name_problems(name) == [], name
    for bad in ("a/b", "Smith 2026", "../Smith2026X", "Smith2026X.py", "__init__", "_Smith2026", "", "Smith\n2026"):
        assert rules.unsafe_name(bad), bad


def test_a_name_robustbench_already_has_for_that_leaderboard_is_refused():
    assert any("already names" in p for p in rules.name_problems("Wang2023Better_WRN-70-16", "cifar10", "Linf"))
    assert rules.name_problems("Wang2023Better_WRN-70-16", "cifar100", "corruptions") == []


def test_module_and_class_names_are_identifiers_distinct_in_case_and_never_robustbench_modules():
    import robustbench

    existing = {f.removesuffix(".py") for f in os.listdir(os.path.join(os.path.dirname(robustbench.__file__),
                                                                       "model_zoo", "architectures"))}
    names = [n for _, _, n in _names()] + ["Smith2026Sharp", "SMITH2026Sharp", "smith2026sharp", "Init2026__init__"]
    modules = {source.module_name(n) for n in set(names)}
    assert len(modules) == len(set(names))  # distinct, also for names that differ only in case
    assert len({m.lower() for m in modules}) == len(modules)
    assert all(m.isidentifier() and m == m.lower() and m not in existing and m != "__init__" for m in modules)
    assert source.class_name("Wang2023Better_WRN-70-16") == "Wang2023Better_WRN_70_16Net"


def test_a_hyphenated_name_exports_and_loads_through_robustbench(timm_ckpt, tmp_path, monkeypatch):  # noqa: F811
    import torch

    from test_export import _test_images, load_through_robustbench
    from zoo.checkpoint import load_checkpoint, model_from_checkpoint

    results = tmp_path / "results.jsonl"
    _write_row(results, timm_ckpt)
    name = "Smith2026Sharp_WRN-28-10"
    paths = bexport.export(timm_ckpt, name=name, out=str(tmp_path / "e"), results=str(results), **PAPER)
    assert paths["info"].endswith(f"{name}.json")
    x = _test_images(4)
    with torch.no_grad():
        ours = model_from_checkpoint(load_checkpoint(timm_ckpt)).eval()(x)
        assert torch.equal(load_through_robustbench(paths, name, "cifar10", "Linf", monkeypatch)(x), ours)


@pytest.mark.parametrize("missing", ["title", "link", "venue", "reported"])
def test_a_submission_needs_title_link_venue_and_the_reported_number(timm_ckpt, tmp_path, missing):  # noqa: F811
    results = tmp_path / "results.jsonl"
    _write_row(results, timm_ckpt)
    paper = {**PAPER, missing: None if missing == "reported" else " "}
    with pytest.raises(bexport.ExportRefused) as refused:
        bexport.export(timm_ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results), **paper)
    assert [p for p in refused.value.problems if f"--{missing}" in p]
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_corruptions_line_has_the_columns_of_that_datasets_robustbench_file(timm_ckpts, tmp_path, dataset):  # noqa: F811
    import pandas as pd

    ckpt = timm_ckpts[dataset]
    results = tmp_path / "results.jsonl"
    row = _write_row(results, ckpt, data=dataset, **_corruption_row(ckpt))
    paths = bexport.export(ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results),
                           threat="corruptions", dataset=dataset, additional_data=False, **PAPER)
    ours = open(paths["unaggregated"]).read().splitlines()
    rb = open(_rb(f"{dataset}_corruptions_unaggregated_results_head.csv")).read().splitlines()
    assert ours[:2] == rb[:2]  # both header rows, character for character
    # our line pasted under RobustBench's header: every value lands under its own (corruption, severity)
    pasted = os.path.join(tmp_path, "pasted.csv")
    with open(pasted, "w") as f:
        f.write("\n".join(rb + ours[2:]) + "\n")
    frame = pd.read_csv(pasted, header=[0, 1], index_col=0)
    for (c, s), v in frame.loc["Smith2026Sharp"].items():
        assert v == pytest.approx(row["corruption_severity_acc"][f"{c}/{int(s)}"])


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_corruptions_json_of_an_adversarially_trained_model_is_laid_out_as_robustbenchs(tmp_path, dataset,
                                                                                         checkpoint, hundred_classes):
    ckpt = checkpoint(recipe="pgd_at", steps=1, **({"data": hundred_classes, "n_train": None}
                                                    if dataset == "cifar100" else {}))
    results = tmp_path / "results.jsonl"
    _write_row(results, ckpt, data=dataset, **_corruption_row(ckpt))
    paths = bexport.export(ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results),
                           threat="corruptions", dataset=dataset, additional_data=False, **PAPER)
    ours = json.loads(open(paths["info"]).read())
    theirs = json.load(open(_rb(f"{dataset}_corruptions_Addepalli2021Towards_WRN34.json")))
    assert list(ours) == list(theirs)  # the same fields in the same order: no `unreliable`, no footnote
    assert ours["eps"] is None and theirs["eps"] is None


def test_linf_json_has_robustbenchs_fields_in_its_order(timm_ckpt, tmp_path):  # noqa: F811
    results = tmp_path / "results.jsonl"
    _write_row(results, timm_ckpt)
    paths = bexport.export(timm_ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results),
                           footnote="Trained with SAM.", **PAPER)
    theirs = json.load(open(_rb("cifar10_Linf_Wang2023Better_WRN-70-16.json")))
    assert list(json.loads(open(paths["info"]).read())) == list(theirs)


def _headings(text):
    return [ln for ln in text.splitlines() if ln.startswith("#")]


def test_issue_is_robustbenchs_new_model_template_filled_in(timm_ckpt, tmp_path):  # noqa: F811
    template = open(_rb("new-model.md")).read()
    body = template.split("---", 2)[2]  # after the template's front matter
    results = tmp_path / "results.jsonl"
    _write_row(results, timm_ckpt)
    _write_row(results, timm_ckpt, **_corruption_row(timm_ckpt))
    out = tmp_path / "export"
    lin = bexport.export(timm_ckpt, name="Smith2026Sharp", out=str(out), results=str(results), license_="MIT",
                         **PAPER)
    cor = bexport.export(timm_ckpt, name="Smith2026Sharp", out=str(out), results=str(results),
                         threat="corruptions", **PAPER)
    for paths, words in ((lin, "Linf"), (cor, "Common Corruptions")):
        issue = open(paths["issue"]).read()
        assert issue.splitlines()[0] == "[New Model] Smith2026Sharp"  # the template's title, filled
        wanted = [h for h in _headings(body) if h != "## Model 2"]
        assert _headings(issue) == wanted
        labels = re.findall(r"^- \*\*([^*]+)\*\*:", body, re.M)
        assert re.findall(r"^- \*\*([^*]+)\*\*:", issue, re.M) == labels
        assert f"- **Threat Model**: {words}\n" in issue
        for box in re.findall(r"^- \[ \] (.{30})", body, re.M):  # every Model Zoo checkbox, by its words
            assert re.search(r"^- \[[ x]\] " + re.escape(box), issue, re.M), box
        assert str(tmp_path) not in issue and "npz:" not in issue  # no local paths in the answers
    # a Linf and a corruptions export of one model in one folder: both claims' files survive
    for key in ("issue", "pull_request", "entry", "info"):
        assert lin[key] != cor[key] and os.path.exists(lin[key]) and os.path.exists(cor[key])
    assert "- [x] I agree to release" in open(lin["issue"]).read()


@pytest.mark.parametrize("dataset,threat,opening,indent", [
    ("cifar10", "Linf", ["linf = OrderedDict(", "    ["], 8),  # robustbench/model_zoo/cifar10.py's linf layout
    ("cifar10", "corruptions", ["common_corruptions = OrderedDict(["], 4),
    ("cifar100", "Linf", ["linf = OrderedDict(["], 4)])
def test_entry_file_gives_the_entry_as_robustbenchs_files_write_it(timm_ckpts, tmp_path, dataset, threat, opening,  # noqa: F811
                                                                    indent):
    ckpt = timm_ckpts[dataset]
    results = tmp_path / "results.jsonl"
    row = _corruption_row(ckpt) if threat == "corruptions" else {}
    _write_row(results, ckpt, data=dataset, **row)
    paths = bexport.export(ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results),
                           threat=threat, dataset=dataset, additional_data=False, **PAPER)
    text = open(paths["entry"]).read()
    assert "ENTRY" not in text
    lines = text.splitlines()
    start = lines.index(opening[0])
    assert lines[start:start + len(opening)] == opening
    pad = " " * indent
    assert lines[start + len(opening):start + len(opening) + 4] == [
        f"{pad}('Smith2026Sharp', {{", f"{pad}    'model': Smith2026SharpNet,",
        f"{pad}    'gdrive_id': 'FILL_IN_GDRIVE_ID',", f"{pad}}}),"]
    # RobustBench's own file opens and indents the same way (the robustbench package ships it)
    import importlib.util

    from bench.deps import import_autoattack

    import_autoattack()
    src = open(importlib.util.find_spec(f"robustbench.model_zoo.{dataset}").origin).read().splitlines()
    at = src.index(opening[0])
    assert src[at:at + len(opening)] == opening
    first = next(line for line in src[at + len(opening):] if line.strip())
    assert len(first) - len(first.lstrip()) == indent and first.lstrip().startswith("('")
    compile(text, paths["entry"], "exec")


@pytest.mark.parametrize("dataset,threat", [(d, t) for d, ts in RB_LEADERBOARDS.items() for t in ts
                                            if d != "imagenet"])  # ImageNet's: tests/test_imagenet.py
def test_the_entry_pasted_last_into_robustbenchs_dictionary_as_the_steps_say_parses_there(timm_ckpts, tmp_path,  # noqa: F811
                                                                                          dataset, threat):
    """The last place in each dictionary is where a paste goes wrong: CIFAR-10's common_corruptions ends its last
    entry in `})`, no comma. Following the steps (the entry file's and PULL_REQUEST's), the file still parses and
    the dictionary ends with our entry."""
    ckpt = timm_ckpts[dataset]
    results = tmp_path / "results.jsonl"
    claim = _corruption_row(ckpt) if threat == "corruptions" else _autoattack_row(threat)
    _write_row(results, ckpt, data=dataset, **claim)
    paths = bexport.export(ckpt, name="Smith2026Sharp", out=str(tmp_path / "e"), results=str(results),
                           threat=threat, dataset=dataset, additional_data=False, **PAPER)
    pasted_last_parses(paths, dataset, threat, "Smith2026Sharp")


def pasted_last_parses(paths, dataset, threat, name):
    """Paste the exported entry last into robustbench's own dictionary, as the steps say; the file parses and
    the dictionary ends with the entry, whose fields come back."""
    import ast
    import importlib.util

    from bench.deps import import_autoattack
    from bench.submit.source import ZOO_DICT

    entry_file, steps = open(paths["entry"]).read(), open(paths["pull_request"]).read()
    assert "add the comma" in entry_file and "add the comma" in steps
    lines = entry_file.splitlines()
    var = ZOO_DICT[threat]
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{var} = OrderedDict("))
    while not lines[start].rstrip().endswith("["):
        start += 1
    end = max(i for i, line in enumerate(lines) if line.strip() == "])")
    entry = lines[start + 1:end]
    import_autoattack()
    zoo = open(importlib.util.find_spec(f"robustbench.model_zoo.{dataset}").origin).read().splitlines()
    at = next(i for i, line in enumerate(zoo) if line.startswith(f"{var} = OrderedDict("))
    close = next(i for i in range(at + 1, len(zoo)) if zoo[i].strip() == "])")
    if zoo[close - 1].rstrip().endswith("})"):  # the step: the entry above ends in `})` with no comma
        zoo[close - 1] = zoo[close - 1].rstrip() + ","
    zoo[close:close] = entry
    tree = ast.parse("\n".join(zoo))
    value = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == var)
    last = value.args[0].elts[-1]
    assert last.elts[0].value == name
    return {k.value: v for k, v in zip(last.elts[1].keys, last.elts[1].values)}
