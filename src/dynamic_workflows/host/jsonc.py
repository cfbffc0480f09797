"""JSON with comments (``//``, ``/* */``) and trailing commas, as ``wrangler.jsonc`` allows.

The comments and trailing commas are blanked out (replaced by spaces, newlines kept) and the
rest goes to :func:`json.loads`, so error positions still point into the original text.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JSONCError", "loads"]


class JSONCError(ValueError):
    """The text is not valid JSONC; ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line} column {column}: {message}")
        self.problem = message
        self.line = line
        self.column = column


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _strip_comments(text: str) -> list[str]:
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise JSONCError("unterminated /* comment", *_position(text, i))
            for j in range(i, end + 2):
                if text[j] != "\n":
                    out[j] = " "
            i = end + 2
        else:
            i += 1
    return out


def _strip_trailing_commas(chars: list[str]) -> None:
    i, n = 0, len(chars)
    while i < n:
        c = chars[i]
        if c == '"':
            i += 1
            while i < n and chars[i] != '"':
                i += 2 if chars[i] == "\\" else 1
        elif c == ",":
            j = i + 1
            while j < n and chars[j] in " \t\r\n":
                j += 1
            if j < n and chars[j] in "]}":
                chars[i] = " "
        i += 1


def loads(text: str) -> Any:
    """Parse JSONC text; raises :class:`JSONCError` with the line and column of the problem."""
    chars = _strip_comments(text)
    _strip_trailing_commas(chars)
    try:
        return json.loads("".join(chars))
    except json.JSONDecodeError as exc:
        raise JSONCError(exc.msg, exc.lineno, exc.colno) from None
