"""``pyodide``: what Cloudflare's Python Workflows docs import from Pyodide, for CPython.

On Cloudflare, Python runs in Pyodide and talks to JavaScript through :mod:`pyodide.ffi`; the
docs' workflow code converts dicts with ``to_js(value, dict_converter=Object.fromEntries)``
before handing them to a binding. Here there is no JavaScript on the other side: bindings take
Python values, so the conversions do the obvious thing and such code runs unchanged. Code loaded
by the runtime imports this package as ``pyodide`` (see :mod:`dynamic_workflows.modules`).
"""

from __future__ import annotations

from . import ffi

__all__ = ["__version__", "ffi"]

__version__ = "0.27.0"
"""The Pyodide release whose ``pyodide.ffi`` surface the shim follows."""
