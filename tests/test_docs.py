"""Docs that cannot drift: a short README with its set-up commands, every documented command line parsed by the
current parser, every relative link resolved, the README's generated tables equal to the committed results, and
the documentation site built strictly when MkDocs is installed."""
import argparse
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

PAGES = ["README.md", "CONTRIBUTING.md", "SECURITY.md",
         *sorted(os.path.join("docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))]
MODULES = {"bench.run": "bench.run", "bench.study": "bench.study", "bench.site": "bench.site",
           "bench.leaderboard": "bench.leaderboard", "bench.verify": "bench.verify", "bench.export": "bench.export",
           "bench.data": "bench.data.__main__", "zoo.train": "zoo.train"}


def read(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def test_the_readme_is_short_and_holds_the_set_up_and_the_main_command():
    text = read("README.md")
    assert len(text.splitlines()) <= 200
    assert ('python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/python -m bench.study '
            "--preset smoke") in text
    assert ".venv/bin/python -m pytest -q -n 2 tests" in text
    ci = read(".ci/run")
    assert ".venv/bin/python -m pytest -q -n 2 tests" in ci  # CI runs the README's test command


def _links(text):
    for m in re.finditer(r"\[[^\]]*\]\(([^)\s]+)\)", text):
        target = m.group(1)
        if not re.match(r"^[a-z]+:", target) and not target.startswith("#"):
            yield target.split("#")[0]


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_resolves(page):
    base = os.path.dirname(os.path.join(ROOT, page))
    missing = [t for t in _links(read(page)) if t and not os.path.exists(os.path.join(base, t))]
    assert not missing, missing


def command_lines(text):
    """Every `python -m bench.X` / `python -m zoo.X` command of a page: code blocks (continuation lines joined,
    comments cut) and inline code spans."""
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        out += [ln.strip() for ln in joined.splitlines()]
    out += re.findall(r"`([^`\n]*python -m (?:bench|zoo)\.[^`\n]*)`", text)
    found = []
    for line in out:
        m = re.search(r"python3? -m ((?:bench|zoo)\.[a-z_.]+)(.*)", line)
        if m and m.group(1) in MODULES:
            rest = re.split(r"\s#\s|\s+#$", m.group(2))[0].strip()
            if rest and not rest.startswith((")", ",", ":", ".")):  # a command line, not the command's name in text
                found.append((m.group(1), rest))
    return found


def parser_of(module):
    """The module's parser, as its main builds it (its parse_args intercepted)."""
    caught = {}

    def grab(self, *a, **k):
        caught["p"] = self
        raise SystemExit(0)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", grab)
        try:
            importlib.import_module(MODULES[module]).main(["x"])
        except SystemExit:
            pass
    return caught["p"]


def test_every_documented_command_line_parses_with_the_current_parser():
    lines = [(page, *c) for page in PAGES for c in command_lines(read(page))]
    assert len(lines) >= 30 and {m for _, m, _ in lines} >= set(MODULES) - {"bench.data"}
    parsers = {m: parser_of(m) for m in MODULES}
    bad = []
    for page, module, rest in lines:
        try:
            words = shlex.split(rest)
        except ValueError:
            words = rest.split()
        argv = []
        for w in words:
            if re.match(r"^[|&;>]", w):  # a pipe or a redirection ends the command
                break
            if w in ("...", "…") and not (argv and argv[-1].startswith("-")):  # "more arguments", not a value
                continue
            if "$" in w:  # a shell variable ("$@" in a job script): the user's arguments
                continue
            argv.append(w)
        try:
            parsers[module].parse_args(argv)
        except SystemExit:
            bad.append(f"{page}: python -m {module} {rest}")
    assert not bad, "\n".join(bad)


def test_a_renamed_flag_fails_the_check():
    p = parser_of("bench.run")
    with pytest.raises(SystemExit):
        p.parse_args(["--models", "m.pt", "--pgd-iterations", "10"])  # the documented flag is --pgd-steps


def test_the_readmes_generated_tables_are_the_committed_results():
    res = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "readme.py"), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.skipif(shutil.which("mkdocs") is None and not os.path.exists(os.path.join(os.path.dirname(
    sys.executable), "mkdocs")), reason="the docs extra is not installed (pip install -e '.[docs]')")
def test_the_documentation_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs") or os.path.join(os.path.dirname(sys.executable), "mkdocs")
    res = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "site" / "benchmark" / "index.html").exists()
