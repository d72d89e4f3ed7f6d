"""An error as the one line a user reads: every refusal, failed row and skipped file shows it this way."""
from __future__ import annotations


def first_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of a message, stripped, at most `limit` characters ("" when there is none)."""
    return next((ln.strip()[:limit] for ln in str(text).splitlines() if ln.strip()), "")


def error_line(e: BaseException, limit: int = 300) -> str:
    """The error's first line, or its type's name when its message is empty."""
    return first_line(str(e), limit) or type(e).__name__


def typed_line(e: BaseException, limit: int = 120) -> str:
    """`Type: first line` (only the type when the message is empty): for errors raised by other libraries, whose
    message alone may not say what went wrong."""
    line = first_line(str(e), limit)
    return f"{type(e).__name__}: {line}" if line else type(e).__name__
