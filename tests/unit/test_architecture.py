"""The shape of the package, checked from its source: imports flow one way (no cycles) and no
module reaches into another object's private attributes or another module's private names.

Both checks read the source with :mod:`ast` and import nothing, so they hold for code paths no
other test runs (imports inside functions included). An import under ``if TYPE_CHECKING:`` is
not an import at run time and is left out of the cycle check.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path


def _package_folder() -> Path:
    # Found, not imported: the checks read the source only.
    spec = importlib.util.find_spec("dynamic_workflows")
    assert spec is not None
    assert spec.origin is not None
    return Path(spec.origin).resolve().parent


PACKAGE = _package_folder()
ROOT = PACKAGE.parent
SELF_NAMES = frozenset({"self", "cls", "mcs"})

PRIVATE_ACCESS_ALLOWED: dict[tuple[str, str], str] = {
    # (module, expression): why it is not a leak of another module's internals.
    ("sandbox/confine.py", "os._exit"): "the documented way to leave a forked child at once",
    ("sandbox/zygote.py", "os._exit"): "the documented way to leave a forked child at once",
}
"""Private attribute reads that are what they look like, each with its reason."""

PUBLIC_UNDERSCORED = frozenset({"_asdict", "_field_defaults", "_fields", "_make", "_replace"})
"""Public API of named tuples (``urlsplit(url)._replace(...)``), underscored by the standard
library so as not to clash with field names."""

# -- reading the package ---------------------------------------------------------------------------


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: dotted name -> (file, is a package)."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except what sits under ``if TYPE_CHECKING:`` (its ``else:`` runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imported_module(name: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    """The absolute module ``from <node.module> import ...`` names inside module ``name``."""
    if not node.level:
        return node.module
    package = name.split(".") if is_package else name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _nearest_module(name: str) -> str | None:
    """``name`` if it is one of the package's modules, else its nearest enclosing one."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str) -> set[str]:
    """The package's modules that module ``name`` imports at run time (anywhere in it)."""
    path, is_package = MODULES[name]
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _nearest_module(alias.name)
                if target is not None:
                    out.add(target)
        elif isinstance(node, ast.ImportFrom):
            module = _imported_module(name, is_package, node)
            if module is None:
                continue
            for alias in node.names:
                # ``from pkg import sub`` imports the module ``pkg.sub``; ``from mod import f``
                # imports ``mod``.
                target = _nearest_module(f"{module}.{alias.name}")
                if target is not None:
                    out.add(target)
    out.discard(name)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(graph, group) for group in groups]


def _cycle_in(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle through the group's first module, as a path that returns to it."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & group):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - a group has one


def _own_private_names(tree: ast.AST) -> set[str]:
    """The private names a module defines itself: its functions, classes and methods, and the
    attributes it assigns on ``self``/``cls`` (or names in ``__slots__``). A module reading these
    on another object of its own classes (``Headers._of``, ``other._items``) is one concept's
    code touching its own state, not a leak across modules."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in SELF_NAMES:
                names.add(node.attr)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            )
    return {n for n in names if _is_private(n)}


def _private_attributes(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, expression)`` of every ``x._name`` read where ``x`` is not ``self``/``cls`` and
    ``_name`` is not one the module defines itself."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _own_private_names(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
            continue
        if node.attr in PUBLIC_UNDERSCORED or node.attr in own:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in SELF_NAMES:
            continue
        yield node.lineno, ast.unparse(node)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


# -- the checks ----------------------------------------------------------------------------------


def test_the_package_has_no_import_cycles() -> None:
    graph = {name: _imports(name) for name in MODULES}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_imports_in_functions_but_not_type_checking_ones() -> None:
    # The check itself, on what it is meant to tell apart.
    engine = _imports("dynamic_workflows.engine")
    assert "dynamic_workflows.binding" in engine  # imported inside Engine.register
    process = _imports("dynamic_workflows.sandbox.process")
    assert "dynamic_workflows.sandbox.confine" in process  # inside WorkerProcess.start
    assert "dynamic_workflows.sandbox.forkserver" not in process  # TYPE_CHECKING only
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_module_reads_another_objects_private_attributes() -> None:
    found: list[str] = []
    seen: set[tuple[str, str]] = set()
    for path, _ in MODULES.values():
        module = _rel(path)
        for line, expression in _private_attributes(path):
            key = (module, expression)
            seen.add(key)
            if key in PRIVATE_ACCESS_ALLOWED:
                continue
            found.append(f"{module}:{line}: {expression}")
    found.sort()
    assert not found, "private attributes read from outside their object:\n" + "\n".join(found)
    stale = sorted(set(PRIVATE_ACCESS_ALLOWED) - seen)
    assert not stale, f"allowed private reads that no longer occur (remove them): {stale}"


def test_no_module_imports_another_modules_private_names() -> None:
    # ``from .protocol import _Msg`` or ``from ..workers._http import x``: a private name, or
    # a private module of another package (``workers/_http.py`` is the workers package's own).
    found: list[str] = []
    for name, (path, is_package) in MODULES.items():
        module = _rel(path)
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _imported_module(name, is_package, node) or ""
            private_names = [a.name for a in node.names if _is_private(a.name)]
            if private_names and _nearest_module(source) is not None:
                found.append(f"{module}:{node.lineno}: {source} import {private_names}")
            owner, _, last = source.rpartition(".")
            if (
                _is_private(last)
                and _nearest_module(source) is not None
                and not (package == owner or package.startswith(owner + "."))
            ):
                found.append(f"{module}:{node.lineno}: imports {source}")
    assert not found, "private names imported from another module:\n" + "\n".join(found)


def test_a_module_may_touch_the_private_state_it_defines_but_no_other() -> None:
    tree = ast.parse(
        "class Headers:\n"
        "    __slots__ = ('_items',)\n"
        "    @classmethod\n"
        "    def _of(cls, items): ...\n"
        "def copy(h, other):\n"
        "    h._items = Headers._of(other._items)\n"
        "    return other._pending\n"
    )
    assert _own_private_names(tree) == {"_items", "_of"}


def test_test_modules_outside_packages_have_distinct_names() -> None:
    """pytest imports a test file that is not in a package (no ``__init__.py``) by its bare
    name: two such files with one name stop a full run at collection ("import file mismatch"),
    though each directory passes alone. (tests/browser/test_tenants.py did, beside
    tests/unit/test_tenants.py.)"""
    tests = Path(__file__).resolve().parents[1]
    seen: dict[str, Path] = {}
    for path in sorted(tests.rglob("test_*.py")):
        if (path.parent / "__init__.py").exists():
            continue
        other = seen.setdefault(path.name, path)
        assert other == path, f"{path.relative_to(tests)} and {other.relative_to(tests)}"
