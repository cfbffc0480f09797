"""``WorkerCode``: what a Worker Loader's ``get_code`` returns, validated with clear errors.

Accepted as a :class:`WorkerCode` or as a dict with snake_case keys or Cloudflare's camelCase
ones (``compatibilityDate``, ``mainModule``, ``globalOutbound``...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .errors import WorkerCodeError

__all__ = ["INHERIT", "ModuleSource", "WorkerCode", "WorkerLimits", "module_import_name"]


class _Inherit:
    """``global_outbound`` omitted: outbound requests go out through the host."""

    _instance: _Inherit | None = None

    def __new__(cls) -> _Inherit:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "INHERIT"

    def __reduce__(self) -> str:
        return "INHERIT"


INHERIT: Final = _Inherit()
"""The value of ``WorkerCode.global_outbound`` when the key was omitted."""

_MODULE_KINDS = ("py", "text", "json", "data")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CAMEL = {
    "compatibilityDate": "compatibility_date",
    "compatibilityFlags": "compatibility_flags",
    "mainModule": "main_module",
    "globalOutbound": "global_outbound",
}
_LIMIT_KEYS = {
    "cpu_ms": "cpu_ms",
    "cpuMs": "cpu_ms",
    "memory_mb": "memory_mb",
    "memoryMb": "memory_mb",
    "wall_ms": "wall_ms",
    "wallMs": "wall_ms",
    "sub_requests": "sub_requests",
    "subRequests": "sub_requests",
}


@dataclass(frozen=True)
class WorkerLimits:
    """Per-worker limits. None means the loader's default.

    ``cpu_ms``: CPU time the worker may use while one call is in flight; ``wall_ms``: real time
    one ``fetch``/RPC call (or one wake-up of a workflow run) may take; ``memory_mb``: memory
    the tenant may allocate on top of the warmed worker; ``sub_requests``: global ``fetch``
    calls per call.
    """

    cpu_ms: int | None = None
    memory_mb: int | None = None
    wall_ms: int | None = None
    sub_requests: int | None = None

    @classmethod
    def from_value(cls, value: object) -> WorkerLimits:
        """Validate a ``limits`` value (a WorkerLimits, a dict, or None)."""
        if value is None:
            return cls()
        if isinstance(value, WorkerLimits):
            return value
        if not isinstance(value, Mapping):
            raise WorkerCodeError("limits", f"must be a dict, got {type(value).__name__}")
        out: dict[str, int] = {}
        for key, v in value.items():
            name = _LIMIT_KEYS.get(key)
            if name is None:
                raise WorkerCodeError(
                    f"limits.{key}",
                    "unknown limit (known: cpu_ms, memory_mb, wall_ms, sub_requests)",
                )
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise WorkerCodeError(f"limits.{key}", f"must be a positive integer, got {v!r}")
            out[name] = v
        return cls(**out)


@dataclass(frozen=True)
class ModuleSource:
    """One module of tenant code, normalised: its file name, import name, kind and data."""

    filename: str
    name: str
    kind: str
    data: Any


def module_import_name(filename: str) -> str:
    """``"lib/util.py"`` -> ``"lib.util"``; raises WorkerCodeError if it cannot be imported."""
    stem = filename
    for ext in (".py", ".txt", ".json", ".bin"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    if stem.endswith("/__init__"):
        stem = stem[: -len("/__init__")]
    parts = stem.split("/")
    if not all(p.isidentifier() for p in parts):
        raise WorkerCodeError(
            f"modules[{filename!r}]",
            "a module name must be a path of Python identifiers (like 'lib/util.py')",
        )
    return ".".join(parts)


def _module(filename: object, value: object) -> ModuleSource:
    if not isinstance(filename, str) or not filename:
        raise WorkerCodeError("modules", f"module names must be non-empty strings: {filename!r}")
    where = f"modules[{filename!r}]"
    data: Any
    if isinstance(value, str):
        if not filename.endswith(".py"):
            raise WorkerCodeError(
                where,
                "a bare source string needs a '.py' name; use {'text': ...}, "
                "{'json': ...} or {'data': ...} for other kinds",
            )
        kind, data = "py", value
    elif isinstance(value, Mapping):
        keys = [k for k in value if k in _MODULE_KINDS]
        if len(value) != 1 or len(keys) != 1:
            raise WorkerCodeError(
                where,
                f"must be a source string or a dict with exactly one of the keys "
                f"{list(_MODULE_KINDS)}, got keys {sorted(map(str, value))}",
            )
        kind = keys[0]
        data = value[kind]
        if kind in ("py", "text") and not isinstance(data, str):
            raise WorkerCodeError(f"{where}.{kind}", f"must be a str, got {type(data).__name__}")
        if kind == "data":
            if not isinstance(data, bytes | bytearray | memoryview):
                raise WorkerCodeError(f"{where}.data", f"must be bytes, got {type(data).__name__}")
            data = bytes(data)
        if kind == "json":
            from ..core.codec import SerializationError, encode

            try:
                encode(data)
            except SerializationError as exc:
                raise WorkerCodeError(f"{where}.json", f"is not a JSON value: {exc}") from None
    else:
        raise WorkerCodeError(
            where,
            f"must be a source string or a dict like {{'py': ...}}, got {type(value).__name__}",
        )
    return ModuleSource(filename, module_import_name(filename), kind, data)


@dataclass(frozen=True)
class WorkerCode:
    """The code and configuration of one dynamic worker (Cloudflare's ``WorkerCode``).

    ``modules`` maps file names to a source string (``.py``) or to ``{"py"|"text"|"json"|"data":
    value}``; ``main_module`` names the one whose classes are the entrypoints. ``env`` holds JSON
    values and bindings (any other object: its methods are called on the host).
    ``global_outbound``: omitted (:data:`INHERIT`) the host fetches on the tenant's behalf;
    None: no network at all; a binding: every global ``fetch`` goes to its ``fetch``.
    """

    main_module: str
    modules: Mapping[str, Any]
    compatibility_date: str | None = None
    compatibility_flags: tuple[str, ...] = ()
    env: Mapping[str, Any] = field(default_factory=dict)
    global_outbound: Any = INHERIT
    limits: WorkerLimits = field(default_factory=WorkerLimits)

    @classmethod
    def from_value(cls, value: object) -> WorkerCode:
        """Validate ``value`` (a WorkerCode or a dict, snake_case or camelCase keys)."""
        if isinstance(value, WorkerCode):
            return value.validated()
        if not isinstance(value, Mapping):
            raise WorkerCodeError(
                "<code>", f"get_code must return a WorkerCode or a dict, got {type(value).__name__}"
            )
        fields: dict[str, Any] = {}
        known = {
            "main_module",
            "modules",
            "compatibility_date",
            "compatibility_flags",
            "env",
            "global_outbound",
            "limits",
        }
        for key, v in value.items():
            name = _CAMEL.get(key, key)
            if name not in known:
                raise WorkerCodeError(str(key), "unknown field")
            if name in fields:
                raise WorkerCodeError(name, f"given twice (as {name!r} and in camelCase)")
            fields[name] = v
        for required in ("main_module", "modules"):
            if required not in fields:
                raise WorkerCodeError(required, "is required")
        if "limits" in fields:
            fields["limits"] = WorkerLimits.from_value(fields["limits"])
        if "env" in fields and fields["env"] is None:
            fields["env"] = {}
        if "compatibility_flags" in fields:
            flags = fields["compatibility_flags"]
            if flags is None:
                flags = ()
            if isinstance(flags, str) or not isinstance(flags, list | tuple):
                raise WorkerCodeError("compatibility_flags", "must be a list of strings")
            fields["compatibility_flags"] = tuple(flags)
        return cls(**fields).validated()

    def validated(self) -> WorkerCode:
        """Check every field; returns self."""
        self.sources()
        if not isinstance(self.main_module, str) or not self.main_module:
            raise WorkerCodeError("main_module", "must be a non-empty string")
        if self.main_module not in self.modules:
            raise WorkerCodeError(
                "main_module",
                f"{self.main_module!r} is not one of the modules {sorted(self.modules)}",
            )
        if self.sources()[self.main_module].kind != "py":
            raise WorkerCodeError("main_module", f"{self.main_module!r} is not a Python module")
        if self.compatibility_date is not None and (
            not isinstance(self.compatibility_date, str)
            or not _DATE_RE.match(self.compatibility_date)
        ):
            raise WorkerCodeError(
                "compatibility_date",
                f"must be a 'YYYY-MM-DD' string, got {self.compatibility_date!r}",
            )
        for flag in self.compatibility_flags:
            if not isinstance(flag, str):
                raise WorkerCodeError("compatibility_flags", f"must be strings, got {flag!r}")
        if not isinstance(self.env, Mapping):
            raise WorkerCodeError("env", f"must be a dict, got {type(self.env).__name__}")
        for key in self.env:
            if not isinstance(key, str) or not key:
                raise WorkerCodeError("env", f"keys must be non-empty strings, got {key!r}")
        outbound = self.global_outbound
        if (
            outbound is not INHERIT
            and outbound is not None
            and not callable(getattr(outbound, "fetch", None))
        ):
            raise WorkerCodeError(
                "global_outbound",
                f"must be omitted, None, or a binding with a fetch() "
                f"method; got {type(outbound).__name__}",
            )
        if not isinstance(self.limits, WorkerLimits):
            raise WorkerCodeError("limits", "must be a WorkerLimits or a dict")
        return self

    def sources(self) -> dict[str, ModuleSource]:
        """The modules, normalised and checked, by file name."""
        if not isinstance(self.modules, Mapping) or not self.modules:
            raise WorkerCodeError("modules", "must be a non-empty dict of file name -> source")
        out = {name: _module(name, value) for name, value in self.modules.items()}
        seen: dict[str, str] = {}
        for src in out.values():
            if src.name in seen:
                raise WorkerCodeError(
                    f"modules[{src.filename!r}]",
                    f"imports as {src.name!r}, like {seen[src.name]!r}",
                )
            seen[src.name] = src.filename
        return out
