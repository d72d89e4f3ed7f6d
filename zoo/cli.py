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
