"""The admin API's view of what tenant code printed or logged, and of its errors' tracebacks
(ours: Cloudflare's local explorer API has neither)::

    GET /workflows/:name/instances/:id/logs      ?after=CURSOR, step=NAME, count=N, attempt=N,
                                                 limit=N (1-1000, default 500), scope=SCOPE
    GET /workers/:id/logs                        ?after=N: a tenant worker's ring (its output
                                                 outside any workflow run: imports, fetch, RPC)

An instance's page, in the usual envelope::

    {"lines": [{"seq", "time", "stream", "message", "step": {"name", "count"} | null,
                "attempt", "dropped"}...],
     "cursor": "42", "more": false, "status": "running", "bytes": 1234, "dropped_lines": 0}

``cursor`` is what to send as ``?after=`` for the lines that follow (a follower polls with it
until ``status`` is final and ``more`` is false). ``stream`` is ``stdout``, ``stderr``, a
logging level (``INFO``, ``WARNING``...), or ``dwf``: a note of ours saying how many lines were
dropped there (``dropped``), over the limits. Errors (:func:`error_json`) are Cloudflare's
``{"name", "message"}`` plus ``traceback`` (the workflow's frames) when there is one.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from starlette.requests import Request

from ..core.journal import ErrorInfo
from ..core.logs import LogLine
from ..errors import InvalidQueryError
from ..queries import MAX_LIMIT, InstanceView, LogView

__all__ = [
    "error_json",
    "instance_logs_query",
    "log_json",
    "page_json",
    "ring_json",
]


def error_json(error: ErrorInfo) -> dict[str, Any]:
    """An error for the API: Cloudflare's ``{"name", "message"}``, and ``traceback`` beside
    them when the error has one."""
    out: dict[str, Any] = error.as_dict()
    if error.traceback is not None:
        out["traceback"] = error.traceback
    return out


def _iso(ts: float) -> str:
    # As admin.iso writes times: ISO 8601 UTC, milliseconds, "Z".
    moment = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log_json(line: LogView | LogLine, seq: int | None = None) -> dict[str, Any]:
    """One line for the API."""
    number = line.seq if isinstance(line, LogView) else seq
    return {
        "seq": number,
        "time": _iso(line.at),
        "stream": line.stream,
        "message": line.text,
        "step": None if line.step is None else {"name": line.step, "count": line.count},
        "attempt": line.attempt or None,
        "dropped": line.dropped,
    }


def _int(request: Request, name: str, low: int, high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidQueryError(f"{name}: {raw!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidQueryError(f"{name}: must be {bound}, got {value}")
    return value


def instance_logs_query(request: Request) -> dict[str, Any]:
    """The arguments of ``engine.queries.logs`` from ``?after=&step=&count=&attempt=&limit=``
    (InvalidQueryError for one that is not valid)."""
    step_name = request.query_params.get("step")
    count = _int(request, "count", 1)
    if count is not None and step_name is None:
        raise InvalidQueryError("count: only with step")
    return {
        "after": _int(request, "after", 0) or 0,
        "step": None if step_name is None else (step_name, count or 1),
        "attempt": _int(request, "attempt", 1),
        "limit": _int(request, "limit", 1, MAX_LIMIT) or 500,
    }


def page_json(instance: InstanceView, page: Any) -> dict[str, Any]:
    """A :class:`~dynamic_workflows.queries.LogPage` of ``instance`` for the API."""
    return {
        "id": instance.id,
        "scope": instance.scope,
        "status": page.status,
        "lines": [log_json(line) for line in page.lines],
        "cursor": str(page.cursor),
        "more": page.more,
        "bytes": page.bytes,
        "dropped_lines": page.dropped,
    }


def ring_json(worker: str, lines: list[tuple[int, LogLine]], dropped: int) -> dict[str, Any]:
    """A tenant worker's ring for the API."""
    return {
        "id": worker,
        "lines": [log_json(line, seq) for seq, line in lines],
        "cursor": str(lines[-1][0]) if lines else None,
        "dropped_lines": dropped,
    }
