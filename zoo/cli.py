"""What every command line of the project shares: help that shows each option's default where it has one."""
from __future__ import annotations

import argparse


class DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """argparse's help with "(default: X)" after every option whose default is a value (not None, "", False or
    a flag's own), unless its help already says it; the description keeps its own line breaks."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        shown = (default is not None and default is not False and default != "" and default != argparse.SUPPRESS
                 and action.option_strings
                 and not isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
                 and "%(default)" not in text and "default" not in text.lower())
        return f"{text} (default: %(default)s)".strip() if shown else text


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A command's parser: its one-sentence description, and each option's default in --help."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=DefaultsHelpFormatter)


def add_progress(p: argparse.ArgumentParser) -> None:
    """--progress / --no-progress: bars when the output is a terminal (the default), or as forced; without bars a
    command says one line per stage, so a log file holds no escape codes."""
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="progress bars even when the output is not a terminal (default: bars on a terminal only)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def progress_wanted(flag) -> bool:
    """The --progress flag resolved: None (neither given) means bars only when stderr is a terminal."""
    import sys

    return sys.stderr.isatty() if flag is None else bool(flag)
