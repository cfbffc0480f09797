"""``pyodide.ffi`` on CPython: conversions that keep Python values as they are.

``to_js`` returns plain Python containers (dicts through ``dict_converter`` when one is given,
so ``to_js(d, dict_converter=Object.fromEntries)`` is a dict), ``to_py`` undoes nothing, proxies
are the objects themselves. There are no JavaScript objects here, so nothing is a
:class:`JsProxy`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "JsArray",
    "JsBuffer",
    "JsException",
    "JsProxy",
    "create_once_callable",
    "create_proxy",
    "destroy_proxies",
    "jsnull",
    "to_js",
    "to_py",
]

jsnull: Any = None
"""JavaScript's ``null``: Python's None here."""


class JsProxy:
    """The type of a JavaScript object seen from Python; no value here is one (``isinstance(x,
    JsProxy)`` is False), since bindings and events are Python objects."""


class JsArray(JsProxy):
    """A JavaScript array seen from Python (never made here)."""


class JsBuffer(JsProxy):
    """A JavaScript buffer seen from Python (never made here)."""


class JsException(Exception):
    """An error thrown by JavaScript (never raised here; defined so ``except JsException``
    works)."""


def to_js(
    obj: Any,
    *,
    depth: int = -1,
    pyproxies: Any = None,
    create_pyproxies: bool = True,
    dict_converter: Callable[[Iterable[tuple[Any, Any]]], Any] | None = None,
    default_converter: Callable[..., Any] | None = None,
    eager_converter: Callable[..., Any] | None = None,
) -> Any:
    """``obj`` as a value to hand to a binding: lists and tuples become lists, dicts become
    what ``dict_converter`` makes of their items (a dict when none is given, and with
    ``Object.fromEntries``), to ``depth`` levels (-1: all); anything else is returned as it
    is."""

    def convert(value: Any, level: int) -> Any:
        if level == 0:
            return value
        if isinstance(value, Mapping):
            items = [(k, convert(v, level - 1)) for k, v in value.items()]
            return dict(items) if dict_converter is None else dict_converter(items)
        if isinstance(value, list | tuple):
            return [convert(v, level - 1) for v in value]
        return value

    return convert(obj, depth)


def to_py(obj: Any, *, depth: int = -1, default_converter: Callable[..., Any] | None = None) -> Any:
    """The Python value of ``obj``: ``obj`` itself (it is one already)."""
    return obj


def create_proxy(obj: Any, *, capture_this: bool = False, roundtrip: bool = True) -> Any:
    """A proxy to hand ``obj`` to JavaScript by reference: ``obj`` itself here."""
    return obj


def create_once_callable(obj: Callable[..., Any], *, _may_syncify: bool = False) -> Any:
    """A callable JavaScript may call once: ``obj`` itself here."""
    return obj


def destroy_proxies(proxies: Any) -> None:
    """Release proxies: there are none to release here."""
