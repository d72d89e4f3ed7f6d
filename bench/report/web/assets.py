"""The JavaScript and CSS the site ships, written once into <site>/assets/ and shared by every page.

- Plotly (plotly.js as the `plotly` Python package bundles it): interactive plots, drawn as SVG.
- DataTables, as the offline bundle the `itables` package ships (DataTables 2 with Buttons' column chooser,
  SearchPanes, Select): sortable, searchable tables. The bundle is an ES module, and browsers refuse module
  scripts from file:// pages; so it is wrapped, unchanged, in a function that hands its exports to
  `window.DataTablesBundle`, which a classic <script> can load from file://, a web server or GitHub Pages alike.
- site.css and site.js: this project's layout and the glue between data, tables and plots.
No page loads anything from the network.
"""
from __future__ import annotations

import hashlib
import os
import re
from importlib import resources

from zoo.files import write_text_atomic

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _datatables() -> tuple[str, str]:
    """(classic-script JavaScript, CSS) from itables' offline DataTables bundle."""
    base = resources.files("itables") / "html"
    js = (base / "dt_bundle.js").read_text(encoding="utf-8")
    css = (base / "dt_bundle.css").read_text(encoding="utf-8")
    exports = list(re.finditer(r"export\s*\{([^}]*)\}\s*;?", js))
    if len(exports) != 1:
        raise RuntimeError("itables' dt_bundle.js does not end in one export list; this itables version is not "
                           "supported: install the version pyproject.toml names")
    match = exports[0]
    names = {}
    for part in match.group(1).split(","):
        local, _, exported = (p.strip() for p in part.partition(" as "))
        names[exported or local] = local
    if "default" not in names or "jQuery" not in names:
        raise RuntimeError("itables' dt_bundle.js exports no DataTable or jQuery; unsupported itables version")
    handover = ("window.DataTablesBundle = {DataTable: " + names["default"] + ", jQuery: " + names["jQuery"] +
                "".join(f", {k}: {v}" for k, v in names.items() if k not in ("default", "jQuery")) + "};")
    wrapped = ('(function () {\n"use strict";\n' + js[:match.start()] + handover + "\n})();\n" + js[match.end():])
    return wrapped, css


def write_assets(site: str) -> dict[str, str]:
    """Write the shared assets under site/assets/ (skipping files whose content is already there); returns
    {name: path relative to the site root}."""
    folder = os.path.join(site, "assets")
    os.makedirs(folder, exist_ok=True)
    dt_js, dt_css = _datatables()
    files = {"plotly.min.js": _plotly_js(), "datatables.js": dt_js, "datatables.css": dt_css}
    for name in ("site.css", "site.js"):
        with open(os.path.join(STATIC, name), encoding="utf-8") as f:
            files[name] = f.read()
    for name, text in files.items():
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                if hashlib.sha256(f.read()).digest() == hashlib.sha256(text.encode("utf-8")).digest():
                    continue
        write_text_atomic(path, text)
    return {name: f"assets/{name}" for name in files}
