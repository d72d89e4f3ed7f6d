"""One home per concept: an evaluation's names come from one type, model entries are told apart by the model
door only, and the defaults are said once."""
import ast
import os

import pytest
from conftest import ROOT

from bench.attacks.evaluation import Evaluation, eps_key


def test_an_evaluation_is_named_one_way_everywhere():
    aa = Evaluation.of({"attack": "autoattack", "norm": "Linf", "eps_str": "8/255", "eps": 8 / 255})
    assert (aa.label, aa.title, aa.column, aa.ball) == ("autoattack Linf 8/255", "AA Linf 8/255", "AA 8/255",
                                                        "Linf 8/255")
    assert aa.key == ("autoattack", "Linf", eps_key(8 / 255)) and aa.eps == 8 / 255 and aa.has_ball
    # the same radius written as a decimal meets the fraction in the key
    assert Evaluation("autoattack", "Linf", "0.0313725490196").key == aa.key
    clean = Evaluation.of({"attack": "clean", "norm": None, "eps_str": "0", "eps": 0.0})
    assert (clean.label, clean.title, clean.has_ball, clean.eps) == ("clean", "clean", False, 0.0)
    assert Evaluation.of({"attack": "corruptions", "norm": "Linf", "eps_str": "8/255"}).has_ball is False
    # a row's stray eps_str without a norm is no ball
    assert Evaluation.of({"attack": "clean", "eps_str": "8/255"}).label == "clean"


def _sources():
    for pkg in ("bench", "zoo"):
        for folder, _, files in os.walk(os.path.join(ROOT, pkg)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(folder, f)
                    yield os.path.relpath(path, ROOT), ast.parse(open(path, encoding="utf-8").read())


def _constants(tree):
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_no_entry_prefix_is_tested_outside_the_model_door():
    prefixes = ("timm:", "hf-hub:", "hf-dir:", "rb:")
    found = []
    for rel, tree in _sources():
        if rel == os.path.join("bench", "eval", "loading.py"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("startswith", "removeprefix"):
                args = [c for a in node.args for c in ([a] if not isinstance(a, ast.Tuple) else a.elts)]
                named = [a.id for a in args if isinstance(a, ast.Name)]
                if any(isinstance(a, ast.Constant) and a.value in prefixes for a in args) or \
                        set(named) & {"TIMM", "HF_HUB", "HF_DIR"}:
                    found.append(f"{rel}:{node.lineno}")
    assert not found, found


def test_the_defaults_are_said_once():
    holders = {v: [rel for rel, tree in _sources() if v in _constants(tree)] for v in ("results.jsonl", "runs/bench")}
    assert holders == {"results.jsonl": [os.path.join("bench", "defaults.py")],
                       "runs/bench": [os.path.join("bench", "defaults.py")]}


def test_license_takes_an_id_or_the_url_of_a_custom_one():
    from bench.hub.card import license_fields

    assert license_fields("MIT") == {"license": "mit"}
    assert license_fields("") == {"license": "other"}
    url = "https://example.org/weights-licence.txt"
    assert license_fields(url) == {"license": "other", "license_name": "custom", "license_link": url}
    for bad in ("MIT\nlicense: pwned", "my licence", "https://x.example/a b"):
        with pytest.raises(ValueError, match="neither a licence id"):
            license_fields(bad)
