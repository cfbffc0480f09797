"""A project's ``wrangler.jsonc`` / ``wrangler.json`` / ``wrangler.toml``, read and checked.

The fields ``dwf`` uses, as wrangler spells them::

    name                  the worker's name (default: the project folder's name)
    main                  the dispatcher's entry module, a .py file (e.g. "src/entry.py")
    compatibility_date    "YYYY-MM-DD"
    compatibility_flags   ["python_workers", ...]
    worker_loaders        [{"binding": "LOADER"}]
    workflows             [{"name": "tenant-workflows", "binding": "WORKFLOWS",
                            "class_name": "TenantWorkflows",
                            "concurrency": {"limit": 10},   (optional, as Cloudflare's)
                            "schedules": "*/5 * * * *" | ["0 * * * *", ...],   (Cloudflare's)
                            "retention": {"successRetention": "7 days",        (ours: this
                                          "errorRetention": "30 days"}}]        workflow's default)
    retention             {"successRetention": ..., "errorRetention": ...}
                          (ours: the project's default; without any, finished instances are kept)
    vars                  {"NAME": <JSON value>}   (plain values on env)

And our own section (wrangler reports it as unknown and ignores it)::

    dynamic_workflows     {"tenants": {"max_running": 50, "max_live": 100000,
                                       "create_rate": 100, "create_burst": 200, "weight": 1},
                           "fair": true}

``tenants``: the policy of every tenant (scope) whose dispatcher passes no ``limits=`` for a
field (:mod:`dynamic_workflows.core.tenancy`); ``fair``: claim across tenants in weighted turns
(the default) or first come first claimed.

Every problem is a :class:`ProjectConfigError` naming the file, the field (``workflows[0].
class_name``) and what is wrong. Other wrangler fields are accepted and reported as unused.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.cron import parse_schedules
from ..core.retention import Retention, parse_retention
from ..core.tenancy import DEFAULT_POLICY, TenantPolicy, parse_policy
from ..errors import ConfigurationError, ProjectConfigError
from . import jsonc

__all__ = [
    "CONFIG_NAMES",
    "LoaderBinding",
    "ProjectConfig",
    "ProjectConfigError",
    "WorkflowConfig",
    "display_path",
    "find_config",
    "load_config",
]

CONFIG_NAMES = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")
"""Looked for in this order, as wrangler does."""

_USED = {
    "name",
    "main",
    "compatibility_date",
    "compatibility_flags",
    "worker_loaders",
    "workflows",
    "vars",
    "dynamic_workflows",
    "retention",
    "$schema",
}
_WORKFLOW_NAME_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9-_]*$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class LoaderBinding:
    """One ``worker_loaders`` entry: the env name of a Worker Loader."""

    binding: str


@dataclass(frozen=True)
class WorkflowConfig:
    """One ``workflows`` entry."""

    name: str
    binding: str
    class_name: str
    concurrency: int | None = None
    """``concurrency.limit``: at most that many instances running at once (None: no limit)."""
    schedules: tuple[str, ...] = ()
    """Cron expressions (wrangler's ``schedules``): each tick creates an instance."""
    retention: Retention | None = None
    """This workflow's default retention (dwf's own field; the create option comes first)."""


@dataclass(frozen=True)
class ProjectConfig:
    """A checked project configuration. Paths are absolute."""

    path: Path
    """The configuration file."""
    name: str
    main: Path
    main_field: str
    """``main`` as written in the file (for messages)."""
    compatibility_date: str | None = None
    compatibility_flags: tuple[str, ...] = ()
    worker_loaders: tuple[LoaderBinding, ...] = ()
    workflows: tuple[WorkflowConfig, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)
    tenant_defaults: TenantPolicy = DEFAULT_POLICY
    """``dynamic_workflows.tenants``: every tenant's policy, unless its dispatcher says."""
    fair: bool = True
    """``dynamic_workflows.fair``."""
    retention: Retention | None = None
    """The project's default retention (dwf's own field); None: finished instances are kept."""
    unused: tuple[str, ...] = ()
    """Top-level fields present in the file that dwf does not use."""

    @property
    def root(self) -> Path:
        """The project folder (the configuration file's)."""
        return self.path.parent

    def workflow(self, name: str) -> WorkflowConfig | None:
        return next((w for w in self.workflows if w.name == name), None)


def find_config(path: str | Path) -> Path:
    """The configuration file for ``path``: the file itself, or the first of
    :data:`CONFIG_NAMES` in the folder."""
    p = Path(path)
    if p.is_file():
        return p.resolve()
    if not p.exists():
        raise ProjectConfigError(p, "", "no such file or folder")
    for name in CONFIG_NAMES:
        candidate = p / name
        if candidate.is_file():
            return candidate.resolve()
    raise ProjectConfigError(
        p, "", f"no {', '.join(CONFIG_NAMES[:-1])} or {CONFIG_NAMES[-1]} in this folder"
    )


def _parse(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectConfigError(display_path(path), "", f"cannot read it: {exc}") from None
    data: Any
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ProjectConfigError(display_path(path), "", f"invalid TOML: {exc}") from None
    else:
        try:
            data = jsonc.loads(text)
        except jsonc.JSONCError as exc:
            kind = "JSONC" if path.suffix == ".jsonc" else "JSON"
            raise ProjectConfigError(display_path(path), "", f"invalid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ProjectConfigError(display_path(path), "", f"must hold an object, not {_kind(data)}")
    return data


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (for messages)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> ProjectConfigError:
        return ProjectConfigError(display_path(self.path), field, problem)

    def schedules(self, value: object, field: str) -> tuple[str, ...]:
        try:
            return parse_schedules(value, what=field)
        except ConfigurationError as exc:
            raise self.fail("", str(exc)) from None

    def retention(self, value: object, field: str) -> Retention | None:
        try:
            return parse_retention(value, what=field)
        except ConfigurationError as exc:
            raise self.fail("", str(exc)) from None

    def string(self, value: object, field: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(field, f"must be a non-empty string, got {_kind(value)}")
        return value

    def identifier(self, value: object, field: str) -> str:
        text = self.string(value, field)
        if not text.isidentifier():
            raise self.fail(
                field,
                f"{text!r} is not a valid name (letters, digits and _, not starting "
                "with a digit: it becomes an attribute of env or a Python class)",
            )
        return text

    def items(self, value: object, field: str, keys: set[str]) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise self.fail(field, f"must be a list, got {_kind(value)}")
        out = []
        for i, item in enumerate(value):
            where = f"{field}[{i}]"
            if not isinstance(item, dict):
                raise self.fail(where, f"must be an object, got {_kind(item)}")
            unknown = sorted(set(item) - keys)
            if unknown:
                raise self.fail(
                    where,
                    f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(keys))})",
                )
            out.append(item)
        return out


def load_config(path: str | Path) -> ProjectConfig:
    """Read and check the configuration of the project at ``path`` (a folder or the file)."""
    file = find_config(path)
    data = _parse(file)
    check = _Checker(file)

    name = check.string(data["name"], "name") if "name" in data else file.parent.name

    if "main" not in data:
        raise check.fail("main", 'is required: the dispatcher\'s entry module, e.g. "src/entry.py"')
    main_field = check.string(data["main"], "main")
    if not main_field.endswith(".py"):
        raise check.fail("main", f"{main_field!r} is not a Python module (.py)")
    main = (file.parent / main_field).resolve()
    if not main.is_file():
        raise check.fail("main", f"{main_field!r} does not exist (looked for {main})")
    if not main.stem.isidentifier():
        raise check.fail("main", f"{main.name!r} cannot be imported: its name is not a Python name")

    date = data.get("compatibility_date")
    if date is not None and (not isinstance(date, str) or not _DATE_RE.match(date)):
        raise check.fail("compatibility_date", f'must be a "YYYY-MM-DD" string, got {date!r}')

    flags = data.get("compatibility_flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise check.fail("compatibility_flags", "must be a list of strings")

    loaders = tuple(
        LoaderBinding(check.identifier(item.get("binding"), f"worker_loaders[{i}].binding"))
        for i, item in enumerate(
            check.items(data.get("worker_loaders", []), "worker_loaders", {"binding"})
        )
    )

    workflows = []
    keys = {"name", "binding", "class_name", "script_name", "concurrency", "schedules", "retention"}
    for i, item in enumerate(check.items(data.get("workflows", []), "workflows", keys)):
        where = f"workflows[{i}]"
        wf_name = check.string(item.get("name"), f"{where}.name")
        if len(wf_name) > 64 or not _WORKFLOW_NAME_RE.match(wf_name):
            raise check.fail(
                f"{where}.name",
                f"{wf_name!r} must be 1-64 characters of letters, digits, - and _, "
                "not starting with -",
            )
        script = item.get("script_name")
        if script is not None and script != name:
            raise check.fail(
                f"{where}.script_name",
                f"{script!r}: workflows of another worker are not supported; the class must "
                f"be exported by this project's main module",
            )
        workflows.append(
            WorkflowConfig(
                wf_name,
                check.identifier(item.get("binding"), f"{where}.binding"),
                check.identifier(item.get("class_name"), f"{where}.class_name"),
                _concurrency(check, item.get("concurrency"), f"{where}.concurrency"),
                check.schedules(item.get("schedules"), f"{where}.schedules"),
                check.retention(item.get("retention"), f"{where}.retention"),
            )
        )

    variables = data.get("vars", {})
    if not isinstance(variables, dict):
        raise check.fail("vars", f"must be an object, got {_kind(variables)}")
    for key in variables:
        check.identifier(key, f"vars.{key}")

    tenant_defaults, fair = _our_section(check, data.get("dynamic_workflows"))

    seen_names: dict[str, str] = {}
    for i, wf in enumerate(workflows):
        if wf.name in seen_names:
            raise check.fail(
                f"workflows[{i}].name", f"{wf.name!r} is already used by {seen_names[wf.name]}"
            )
        seen_names[wf.name] = f"workflows[{i}]"
    bindings: dict[str, str] = {}
    for where, binding in [
        *((f"worker_loaders[{i}].binding", lb.binding) for i, lb in enumerate(loaders)),
        *((f"workflows[{i}].binding", wf.binding) for i, wf in enumerate(workflows)),
        *((f"vars.{key}", key) for key in variables),
    ]:
        if binding in bindings:
            raise check.fail(where, f"{binding!r} is already bound by {bindings[binding]}")
        bindings[binding] = where

    return ProjectConfig(
        path=file,
        name=name,
        main=main,
        main_field=main_field,
        compatibility_date=date,
        compatibility_flags=tuple(flags),
        worker_loaders=loaders,
        workflows=tuple(workflows),
        vars=dict(variables),
        tenant_defaults=tenant_defaults,
        fair=fair,
        retention=check.retention(data.get("retention"), "retention"),
        unused=tuple(sorted(set(data) - _USED)),
    )


def _concurrency(check: _Checker, value: object, field: str) -> int | None:
    """``workflows[i].concurrency``: ``{"limit": n}``, n a positive integer."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise check.fail(field, f'must be an object like {{"limit": 10}}, got {_kind(value)}')
    unknown = sorted(set(value) - {"limit"})
    if unknown:
        raise check.fail(field, f"unknown field(s) {', '.join(unknown)} (known: limit)")
    limit = value.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise check.fail(
            f"{field}.limit",
            f"must be a positive integer (instances running at once), got {limit!r}",
        )
    return limit


def _our_section(check: _Checker, value: object) -> tuple[TenantPolicy, bool]:
    """``dynamic_workflows``: ``tenants`` (the default policy) and ``fair``."""
    if value is None:
        return DEFAULT_POLICY, True
    field = "dynamic_workflows"
    if not isinstance(value, dict):
        raise check.fail(field, f"must be an object, got {_kind(value)}")
    unknown = sorted(set(value) - {"tenants", "fair"})
    if unknown:
        raise check.fail(field, f"unknown field(s) {', '.join(unknown)} (known: fair, tenants)")
    fair = value.get("fair", True)
    if not isinstance(fair, bool):
        raise check.fail(f"{field}.fair", f"must be true or false, got {_kind(fair)}")
    try:
        policy = parse_policy(value.get("tenants"), where=f"{field}.tenants")
    except ConfigurationError as exc:
        where, _, problem = str(exc).partition(" ")
        raise check.fail(where.rstrip(":"), problem) from None
    return policy, fair
