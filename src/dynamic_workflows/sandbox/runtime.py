"""The tenant side of a dynamic worker: its modules, its ``env`` and its entrypoints.

Shared by the sandboxed worker process (:mod:`.worker`) and the in-process loader. Tenant
modules are loaded from source strings (never from disk) and are *not* put in ``sys.modules``:
each module's ``__builtins__`` carries an ``__import__``
(:class:`~dynamic_workflows.modules.LocalImporter`) that resolves the tenant's own module names
first (so ``from tenants import x`` finds the tenant's ``tenants.py``, and two tenants in one
process never see each other's modules), maps ``workers`` to the SDK with a ``fetch`` bound to
this tenant's outbound policy, and hands everything else to the normal import system.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from .. import workers as _sdk
from ..modules import LocalImporter
from ..workers import (
    Env,
    ExecutionContext,
    FetchResponse,
    Request,
    Response,
    WorkerEntrypoint,
    WorkflowEntrypoint,
)
from ..workers.hosting import make_request
from .code import ModuleSource

__all__ = ["NO_NETWORK_MESSAGE", "Outbound", "TenantRuntime"]

NO_NETWORK_MESSAGE = (
    "This worker is not permitted to access the internet via global functions like fetch(). "
    "It must use capabilities (such as bindings in 'env') to talk to the outside world."
)
"""workerd's message, verbatim, for ``global_outbound: None``."""

Outbound = Callable[[Request], Awaitable[Response]]


class TenantRuntime:
    """One tenant's loaded code.

    ``outbound`` performs the tenant's global ``fetch`` (None: no network, and ``fetch`` raises
    :data:`NO_NETWORK_MESSAGE`).
    """

    def __init__(
        self,
        tenant: str,
        sources: Iterable[ModuleSource],
        main_module: str,
        env: Mapping[str, Any],
        outbound: Outbound | None,
    ) -> None:
        self.tenant = tenant
        self._sources = {s.name: s for s in sources}
        by_file = {s.filename: s for s in self._sources.values()}
        self._main_name = by_file[main_module].name if main_module in by_file else main_module
        self._packages = {
            name.rsplit(".", i)[0] for name in self._sources for i in range(1, name.count(".") + 1)
        }
        self._modules: dict[str, types.ModuleType] = {}
        self._outbound = outbound
        self.env = Env(dict(env))
        workers = types.ModuleType("workers", _sdk.__doc__)
        workers.__dict__.update(
            {k: v for k, v in _sdk.__dict__.items() if not k.startswith("__") or k == "__all__"}
        )
        workers.__dict__["fetch"] = self.fetch
        workers.__dict__["__getattr__"] = _sdk.__dict__["__getattr__"]
        self._importer = LocalImporter(
            self._is_known, self._load, workers=workers, extra_builtins={"fetch": self.fetch}
        )

    # -- modules ---------------------------------------------------------------------------------

    @property
    def main(self) -> types.ModuleType:
        """The main module (loaded on first use)."""
        return self._load(self._main_name)

    def _load(self, name: str) -> types.ModuleType:
        module = self._modules.get(name)
        if module is not None:
            return module
        parent_name, _, last = name.rpartition(".")
        parent = self._load(parent_name) if parent_name else None
        src = self._sources.get(name)
        if src is None and name not in self._packages:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        module = types.ModuleType(name)
        module.__dict__["__builtins__"] = self._importer.builtins
        is_package = name in self._packages
        if is_package:
            module.__path__ = []
        module.__package__ = name if is_package else parent_name
        module.__file__ = src.filename if src is not None else None
        self._modules[name] = module
        try:
            if src is not None:
                if src.kind == "py":
                    exec(compile(src.data, src.filename, "exec"), module.__dict__)
                else:
                    module.__dict__["default"] = src.data
        except BaseException:
            del self._modules[name]
            raise
        if parent is not None:
            setattr(parent, last, module)
        return module

    def _is_known(self, name: str) -> bool:
        return name in self._sources or name in self._packages

    # -- the global fetch ------------------------------------------------------------------------

    async def fetch(
        self, resource: Any, init: Mapping[str, Any] | None = None, /, **options: Any
    ) -> Response:
        """The tenant's global ``fetch``: through the outbound policy of its WorkerCode."""
        if self._outbound is None:
            raise RuntimeError(NO_NETWORK_MESSAGE)
        response = await self._outbound(make_request(resource, init, **options))
        if not isinstance(response, FetchResponse):  # so ``await response.json()`` reads it
            response = FetchResponse(
                response.body_bytes(),
                response.status,
                response.headers,
                status_text=response.status_text,
            )
        return response

    # -- entrypoints -----------------------------------------------------------------------------

    def entrypoint_class(self, name: str | None) -> type:
        """The class exported as ``name`` (None: ``Default``) by the main module."""
        cls_name = name or "Default"
        cls = self.main.__dict__.get(cls_name)
        if cls is None:
            raise TypeError(f"the main module has no entrypoint named {cls_name!r}")
        if not (isinstance(cls, type) and issubclass(cls, WorkerEntrypoint | WorkflowEntrypoint)):
            raise TypeError(f"{cls_name!r} is not a WorkerEntrypoint or WorkflowEntrypoint class")
        return cls

    def new_entrypoint(self, name: str | None, props: Mapping[str, Any] | None = None) -> Any:
        """A fresh instance of the entrypoint ``name``, as for one request."""
        return self.entrypoint_class(name)(ExecutionContext(props), self.env)

    async def call(
        self,
        entrypoint: str | None,
        method: str,
        args: list[Any],
        kwargs: Mapping[str, Any],
        props: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call ``method`` (``fetch`` or an RPC method) of a fresh entrypoint instance."""
        instance = self.new_entrypoint(entrypoint, props)
        if not isinstance(method, str) or not method or method.startswith("_"):
            raise TypeError(f"{method!r} is not a method that can be called over RPC")
        fn = getattr(instance, method, None)
        if fn is None or not callable(fn):
            raise TypeError(f"entrypoint {entrypoint or 'Default'!r} has no method {method!r}")
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        if method == "fetch" and not isinstance(result, Response):
            raise TypeError(
                f"fetch() of entrypoint {entrypoint or 'Default'!r} returned "
                f"{type(result).__name__}, not a Response"
            )
        return result
