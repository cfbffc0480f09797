"""Loading code given as source strings, and the import names it expects.

Code written for Cloudflare imports ``workers`` and ``workers.workflows``. Rather than installing
a top-level ``workers`` distribution (which would clash with unrelated packages of that name),
the runtime maps those names onto :mod:`dynamic_workflows.workers` for the code it loads.

Such code also imports the modules beside its ``main`` by plain name (``from tenants import
TENANTS``). :class:`LocalImporter` is the one ``__import__`` that does both, for the project's
files in the host (:mod:`.host.sources`) and for a tenant's modules (:mod:`.sandbox.runtime`).
"""

from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from importlib.machinery import ModuleSpec
from typing import Any

__all__ = [
    "LocalImporter",
    "WorkersAliasFinder",
    "absolute_import_name",
    "install_workers_alias",
    "load_module_from_source",
]

_ALIAS = "workers"
_TARGET = "dynamic_workflows.workers"

_SHIMS = {"pyodide": "dynamic_workflows.workers.pyodide", "js": "dynamic_workflows.workers.js"}
"""Pyodide's modules that Cloudflare's Python Workflows docs use (``from pyodide.ffi import
to_js``, ``from js import Object``), as shims that do the obvious thing on CPython. Only code
loaded through :class:`LocalImporter` gets them: a real package of the same name elsewhere in
the process is left alone."""


class WorkersAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``workers`` and ``workers.<sub>`` to ``dynamic_workflows.workers[.<sub>]``."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: types.ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname == _ALIAS or fullname.startswith(_ALIAS + "."):
            real = _TARGET + fullname[len(_ALIAS) :]
            if importlib.util.find_spec(real) is None:
                return None
            return importlib.util.spec_from_loader(fullname, self, is_package=fullname == _ALIAS)
        return None

    def create_module(self, spec: ModuleSpec) -> types.ModuleType:
        return importlib.import_module(_TARGET + spec.name[len(_ALIAS) :])

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install_workers_alias() -> None:
    """Make ``import workers`` resolve to :mod:`dynamic_workflows.workers` (idempotent)."""
    if not any(isinstance(f, WorkersAliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, WorkersAliasFinder())


def load_module_from_source(
    name: str,
    source: str,
    *,
    filename: str | None = None,
    namespace: Mapping[str, object] | None = None,
) -> types.ModuleType:
    """Execute ``source`` as a fresh module called ``name`` (not added to ``sys.modules``)."""
    install_workers_alias()
    module = types.ModuleType(name)
    module.__file__ = filename or f"<{name}>"
    if namespace:
        module.__dict__.update(namespace)
    code = compile(source, module.__file__, "exec")
    exec(code, module.__dict__)
    return module


def absolute_import_name(name: str, package: str, level: int) -> str:
    """The absolute module name that ``from <level dots><name> import ...`` means inside
    ``package`` (what a custom ``__import__`` must work out for relative imports)."""
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        raise ImportError("attempted relative import beyond top-level package")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{name}" if name and base else (name or base)


class LocalImporter:
    """The ``__import__`` of a set of *local* modules, loaded by their owner rather than found
    on ``sys.path``: names of the set resolve to it first, relative imports inside it resolve
    against it, and every other name goes to the normal import system.

    ``is_local(name)``: whether the module ``name`` (``"tenants"``, ``"lib.util"``) belongs to
    the set. ``load(name)``: that module, loaded (with its parents) on first use. ``workers``:
    the module that ``import workers`` gives this code, checked before the set's own names
    (None: ``workers`` is left to the import system, where :func:`install_workers_alias` maps
    it). ``pyodide`` and ``js``, unless the set has modules of those names, are the shims of
    :data:`_SHIMS`.

    Each module of the set runs with :attr:`builtins` as its ``__builtins__``: that is how
    imports inside it reach this hook, and how the hook tells them from anyone else's.
    """

    def __init__(
        self,
        is_local: Callable[[str], bool],
        load: Callable[[str], types.ModuleType],
        *,
        workers: types.ModuleType | None = None,
        extra_builtins: Mapping[str, Any] | None = None,
    ) -> None:
        self._is_local = is_local
        self._load = load
        self._workers = workers
        self._real_import = builtins.__import__
        self.builtins: dict[str, Any] = dict(builtins.__dict__)
        """The ``__builtins__`` of the set's modules: the interpreter's, with this hook as
        ``__import__`` (and ``extra_builtins``)."""
        self.builtins["__import__"] = self.import_module
        if extra_builtins:
            self.builtins.update(extra_builtins)

    def import_module(
        self,
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: tuple[str, ...] | list[str] | None = (),
        level: int = 0,
    ) -> types.ModuleType:
        """``__import__`` for the set's modules (the signature is the builtin's)."""
        if level > 0 and globals is not None and globals.get("__builtins__") is self.builtins:
            name = absolute_import_name(name, globals.get("__package__") or "", level)
            level = 0
        if level == 0:
            top = name.partition(".")[0]
            if top == _ALIAS and self._workers is not None:
                if name == _ALIAS:
                    return self._workers
                sub = self._real_import(_TARGET + name[len(_ALIAS) :], fromlist=("_",))
                return sub if fromlist else self._workers
            shim = _SHIMS.get(top)
            if shim is not None and not self._is_local(top):
                sub = self._real_import(shim + name[len(top) :], fromlist=("_",))
                return sub if fromlist else self._real_import(shim, fromlist=("_",))
            if self._is_local(top):
                module = self._load(name)
                if not fromlist:
                    return self._load(top)
                for item in fromlist:
                    qualified = f"{name}.{item}"
                    if item != "*" and not hasattr(module, item) and self._is_local(qualified):
                        self._load(qualified)
                return module
        return self._real_import(name, globals, locals, fromlist or (), level)
