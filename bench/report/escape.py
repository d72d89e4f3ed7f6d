"""Escaping for every format a value from a checkpoint or a row is written into.

Model names come from file names, recipes and settings from checkpoint metadata, rows from results folders that
other people wrote: all of it is data. Each writer passes such values through the function for its format, so
that a value shows as text and never becomes structure (a table column, a heading, an HTML element, a formula, a
shell command, a line of Python). HTML pages are escaped by Jinja2's autoescaping (bench.report.web);
generated Python receives values only through repr() (bench.submit.source).
"""
from __future__ import annotations

import re
import shlex
import unicodedata

from zoo.metadata import CONTROL

_CONTROL = re.compile(CONTROL.pattern + "+")  # a run of them becomes one space
_MD_SPECIAL = re.compile(r"([\\`\[\]|])")


def no_format(text: str) -> str:
    """The text without Unicode format characters (category Cf): the bidi controls U+202A-U+202E and
    U+2066-U+2069 that make "gnp.exe" display as "exe.png" and reverse the digits of a number written after
    them, zero-width characters, the BOM. Every writer applies it to strings from files, so text shows in the
    order it is stored."""
    if text.isascii():
        return text
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def each_string(fn, obj):
    """obj (rows, metadata: dicts, lists, strings) with fn applied to every string in it, keys too."""
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {each_string(fn, k): each_string(fn, v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(each_string(fn, v) for v in obj)
    return obj


def neutral(obj):
    """obj with no_format applied to every string in it, keys too."""
    return each_string(no_format, obj)


def one_line(value) -> str:
    """The value as text on one line, in stored order: newlines and other control characters become one space,
    format characters (bidi controls) go."""
    return _CONTROL.sub(" ", no_format(str(value)))


def md(value) -> str:
    """Markdown text, safe inside a table cell, a list item or a heading: on one line, `|` cannot end a cell,
    HTML shows as text (entities), and the punctuation that makes links, images and code spans is backslash-
    escaped. Emphasis characters are left alone: at worst they make text italic, never structure, and names like
    pgd_at stay readable in the raw file."""
    text = one_line(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(value) -> str:
    """Inline code in markdown (paths, commands): a fence longer than any backtick run inside; `|` escaped so a
    table cell is not split (GitHub's tables split on `|` even inside code)."""
    text = one_line(value)
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (run + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A CSV cell a spreadsheet will not run: text beginning with =, +, -, @ (or a tab or carriage return) is
    prefixed with a quote (OWASP's advice). Numbers are left as numbers."""
    if isinstance(value, str):
        value = no_format(value)
        if value.startswith(_FORMULA):
            return "'" + value
    return value


def sh(value) -> str:
    """A word of a shell command shown to the user to paste: quoted when it needs to be."""
    return shlex.quote(no_format(str(value)))


# --data specs that hold a path on the machine they ran on (zoo.data's folder:DIR and npz:PATH, ImageNet's DIR)
PATH_SPECS = ("folder:", "npz:", "imagenet:")
LOCAL_KEYS = ("out", "data_dir")  # a training config's folders: where it ran, never what it was
PATH_KEYS = ("data", "train_data", "path", "spec", "checkpoint")  # fields of rows and records that may hold a path
OPAQUE_KEYS = ("points",)  # encoded flags: their "data" is base64, not a --data spec


def public_spec(value):
    """A --data spec or a file path as published (cards, sites, exports): an absolute path is reduced to its
    last part (`folder:/home/ana/mydata` -> `folder:mydata`), so that nothing published names the machine or the
    home folder it came from; a relative path, the project's own layout, is kept. Anything else is returned as
    it is."""
    if not isinstance(value, str):
        return value
    prefix = next((p for p in PATH_SPECS if value.startswith(p)), "")
    rest = value[len(prefix):]
    if rest.startswith(("/", "~", "\\")) or re.match(r"^[A-Za-z]:[\\/]", rest):
        rest = re.split(r"[\\/]", rest.rstrip("/\\"))[-1] or "data"
    return prefix + rest


def public_record(obj):
    """A row, a list of rows or a checkpoint's record as published: the values of the path-bearing fields
    (PATH_KEYS, at any depth) through public_spec, a training config's own folders (out, data_dir) left out."""
    if isinstance(obj, list):
        return [public_record(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    return {k: v if k in OPAQUE_KEYS else public_spec(v) if k in PATH_KEYS else public_record(v)
            for k, v in obj.items() if k not in LOCAL_KEYS}
