"""The dispatcher's own Python modules: the files beside ``main``, importable by plain name.

As in Cloudflare's Python Workers, ``main`` (``src/entry.py``) imports the modules next to it by
plain name (``from tenants import TENANTS``) and the SDK as ``workers``. Those modules are loaded
here, from the project's files, with an ``__import__`` that resolves the project's names first
(:class:`~dynamic_workflows.modules.LocalImporter`);
they are registered in ``sys.modules`` only under a private package (``dwf_project.tenants``), so
a project's ``tenants`` never shadows, or is shadowed by, an installed module of that name, and
two projects loaded in one process do not see each other's modules.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from ..modules import LocalImporter, install_workers_alias

__all__ = ["ProjectModules"]


class ProjectModules:
    """The Python modules under ``root`` (``main``'s folder), loaded on first import."""

    def __init__(self, root: Path) -> None:
        install_workers_alias()
        self.root = root
        self.prefix = _free_prefix()
        package = types.ModuleType(self.prefix, f"The modules of the project in {root}.")
        package.__path__ = []
        sys.modules[self.prefix] = package
        self._modules: dict[str, types.ModuleType] = {}
        self._found: dict[str, tuple[Path, bool] | None] = {}
        self._importer = LocalImporter(self._is_local, self.load)

    def load(self, name: str) -> types.ModuleType:
        """The project module ``name`` (``"entry"``, ``"lib.util"``), imported if needed."""
        module = self._modules.get(name)
        if module is not None:
            return module
        found = self._locate(name)
        if found is None:
            raise ModuleNotFoundError(f"No module named {name!r} in {self.root}", name=name)
        path, is_package = found
        parent_name, _, last = name.rpartition(".")
        parent = self.load(parent_name) if parent_name else None
        qualified = f"{self.prefix}.{name}"
        module = types.ModuleType(qualified)
        module.__file__ = str(path)
        module.__dict__["__builtins__"] = self._importer.builtins
        module.__package__ = name if is_package else parent_name
        if is_package:
            module.__path__ = [str(path.parent)]
        self._modules[name] = module
        sys.modules[qualified] = module
        try:
            source = path.read_text(encoding="utf-8")
            exec(compile(source, str(path), "exec"), module.__dict__)
        except BaseException:
            del self._modules[name]
            sys.modules.pop(qualified, None)
            raise
        if parent is not None:
            setattr(parent, last, module)
        return module

    def close(self) -> None:
        """Forget every loaded module (a reload starts from the files again)."""
        for key in [k for k in sys.modules if k == self.prefix or k.startswith(self.prefix + ".")]:
            del sys.modules[key]
        self._modules.clear()
        self._found.clear()

    def _locate(self, name: str) -> tuple[Path, bool] | None:
        if name in self._found:
            return self._found[name]
        parts = name.split(".")
        found: tuple[Path, bool] | None = None
        if all(p.isidentifier() for p in parts):
            base = self.root.joinpath(*parts)
            if (base / "__init__.py").is_file():
                found = (base / "__init__.py", True)
            elif base.with_name(parts[-1] + ".py").is_file():
                found = (base.with_name(parts[-1] + ".py"), False)
        self._found[name] = found
        return found

    def _is_local(self, name: str) -> bool:
        return self._locate(name) is not None


def _free_prefix() -> str:
    prefix, n = "dwf_project", 1
    while prefix in sys.modules:
        n += 1
        prefix = f"dwf_project_{n}"
    return prefix
