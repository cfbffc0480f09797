"""The host's log lines as JSON (``dwf dev``/``dwf serve --log-format json``): one object per
line, for a log collector.

Every line has ``time`` (ISO 8601 UTC, milliseconds), ``level``, ``logger`` and ``message``,
and the fields its record was given where known (:data:`FIELDS`: ``logging``'s ``extra=``).
Notable events say what they are in ``event``:

=====================  ========================================================================
``node.start``         the server is ready (``node``: its storage node id; ``url``)
``node.stop``          it stopped
``instance.errored``   an instance's run ended with an error (``workflow``, ``scope``,
                       ``instance``, ``error_name``, ``error_message``)
``worker.died``        a tenant's worker process died or was killed (``tenant``, ``pid``,
                       ``reason``)
``limit.hit``          a limit stopped something (``limit``; ``tenant`` or ``instance``)
=====================  ========================================================================
"""

from __future__ import annotations

import datetime as _dt
import json
import logging

__all__ = ["FIELDS", "JSONFormatter"]

FIELDS = (
    "event",
    "workflow",
    "scope",
    "instance",
    "tenant",
    "pid",
    "error_name",
    "error_message",
    "limit",
    "reason",
    "node",
    "url",
)
"""Record attributes copied into the object when a record has them."""


class JSONFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        moment = _dt.datetime.fromtimestamp(record.created, _dt.UTC)
        out: dict[str, object] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)
