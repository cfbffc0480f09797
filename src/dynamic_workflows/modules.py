"""Loading code given as source strings, and the ``workers`` import name it expects.

Code written for Cloudflare imports ``workers`` and ``workers.workflows``. Rather than installing
a top-level ``workers`` distribution (which would clash with unrelated packages of that name),
the runtime maps those names onto :mod:`dynamic_workflows.workers` for the code it loads.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
from collections.abc import Mapping, Sequence
from importlib.machinery import ModuleSpec

__all__ = [
    "WorkersAliasFinder",
    "absolute_import_name",
    "install_workers_alias",
    "load_module_from_source",
]

_ALIAS = "workers"
_TARGET = "dynamic_workflows.workers"


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
