"""``js``: the JavaScript globals Cloudflare's Python Workflows docs use, for CPython.

``from js import Object`` then ``to_js(d, dict_converter=Object.fromEntries)`` is how the docs
build a binding's options; ``JSON``, ``console`` and ``Date.now()`` are the other globals such
code reaches for. Here each does the obvious thing on Python values. Any other name raises an
AttributeError saying it has no counterpart outside Pyodide. Code loaded by the runtime imports
this module as ``js`` (see :mod:`dynamic_workflows.modules`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["JSON", "Date", "Object", "console"]


class Object:
    """``Object``'s static methods, on dicts."""

    @staticmethod
    def fromEntries(entries: Iterable[Any]) -> dict[Any, Any]:
        """A dict of ``(key, value)`` pairs (what ``dict_converter=Object.fromEntries`` is for)."""
        return dict(entries)

    @staticmethod
    def entries(obj: Mapping[Any, Any]) -> list[list[Any]]:
        return [[k, v] for k, v in obj.items()]

    @staticmethod
    def keys(obj: Mapping[Any, Any]) -> list[Any]:
        return list(obj)

    @staticmethod
    def values(obj: Mapping[Any, Any]) -> list[Any]:
        return list(obj.values())

    @staticmethod
    def assign(target: dict[Any, Any], *sources: Mapping[Any, Any]) -> dict[Any, Any]:
        for source in sources:
            target.update(source)
        return target

    @staticmethod
    def new() -> dict[Any, Any]:
        """``Object.new()``: an empty dict."""
        return {}


class JSON:
    """``JSON.stringify`` / ``JSON.parse``, compact as JavaScript's."""

    @staticmethod
    def stringify(value: Any, replacer: Any = None, space: Any = None) -> str:
        indent = space if isinstance(space, int | str) and space else None
        separators = None if indent is not None else (",", ":")
        return json.dumps(value, indent=indent, separators=separators, ensure_ascii=False)

    @staticmethod
    def parse(text: str) -> Any:
        return json.loads(text)


class console:
    """``console.log`` and friends: print (errors and warnings to stderr)."""

    @staticmethod
    def log(*args: Any) -> None:
        print(*args)

    info = debug = log

    @staticmethod
    def error(*args: Any) -> None:
        print(*args, file=sys.stderr)

    warn = error


class Date:
    """``Date.now()``: milliseconds since the epoch."""

    @staticmethod
    def now() -> int:
        return int(time.time() * 1000)


def __getattr__(name: str) -> Any:
    raise AttributeError(
        f"js.{name} is not available: dynamic-workflows runs Python without a JavaScript "
        f"runtime; of the js globals it provides {', '.join(__all__)}"
    )
