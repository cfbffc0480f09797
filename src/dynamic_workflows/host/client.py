"""The admin API from the command line: a small client and the tables ``dwf`` prints.

:class:`AdminClient` speaks the same API as ``wrangler workflows ... --local`` (see
:mod:`.admin`) to ``dwf dev`` or ``dwf serve``; every failure is an :class:`AdminError` whose
message is one readable line (connection refused, HTTP status and the server's message).
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any
from urllib.parse import quote

import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import AdminError
from .app import EXPLORER_API
from .auth import token_problem

__all__ = ["DEFAULT_URL", "AdminClient", "AdminError", "Printer"]

DEFAULT_URL = "http://127.0.0.1:8787"

_STATUS_STYLE = {
    "complete": "green",
    "errored": "red",
    "terminated": "dim",
    "waiting": "yellow",
    "paused": "yellow",
    "waitingForPause": "yellow",
    "running": "cyan",
    "queued": "cyan",
}


def _q(value: str) -> str:
    return quote(value, safe="")


class AdminClient:
    """The admin API of the server at ``url`` (``token``: for ``dwf serve``'s admin port)."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, *, timeout: float = 30):
        problem = None if not token else token_problem(token)
        if problem is not None:
            raise AdminError(f"the admin token (--token or DWF_ADMIN_TOKEN) {problem}")
        self.url = url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url + EXPLORER_API, headers=headers, timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        send_body: bool = False,
    ) -> dict[str, Any]:
        """One request; returns the whole envelope (``result``, ``result_info``...)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        content = json.dumps(body).encode() if send_body else None
        try:
            response = self._http.request(
                method,
                path,
                params=query,
                content=content,
                headers={"content-type": "application/json"} if send_body else None,
            )
        except httpx.ConnectError:
            raise AdminError(
                f"cannot reach the admin API at {self.url} (connection refused): is `dwf dev` "
                "or `dwf serve` running there? (see --url)"
            ) from None
        except httpx.TimeoutException:
            raise AdminError(f"the admin API at {self.url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise AdminError(f"cannot reach the admin API at {self.url}: {exc}") from None
        try:
            envelope = response.json()
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or "success" not in envelope:
            raise AdminError(
                f"{self.url} did not answer like the dwf admin API (HTTP {response.status_code} "
                f"for {method} {EXPLORER_API}{path})"
            )
        if response.status_code == 401:
            raise AdminError(
                "the admin API refused the request (HTTP 401): pass the admin token with "
                "--token or DWF_ADMIN_TOKEN"
            )
        if not envelope["success"]:
            errors = envelope.get("errors") or []
            text = "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict))
            raise AdminError(f"{text or 'request failed'} (HTTP {response.status_code})")
        return envelope

    # -- operations -------------------------------------------------------------------------------

    def list_workflows(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", "/workflows")["result"]
        return result

    def workflow(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/workflows/{_q(name)}")["result"]
        return result

    def trigger(
        self,
        name: str,
        params: Any = None,
        *,
        id: str | None = None,
        scope: str | None = None,
        retention: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create an instance; ``retention``: Cloudflare's create option,
        ``{"successRetention", "errorRetention"}`` (either may be left out)."""
        body: dict[str, Any] = {}
        if id is not None:
            body["id"] = id
        if params is not None:
            body["params"] = params
        if retention:
            body["retention"] = retention
        result: dict[str, Any] = self.call(
            "POST",
            f"/workflows/{_q(name)}/instances",
            params={"scope": scope},
            body=body,
            send_body=True,
        )["result"]
        return result

    def list_instances(
        self,
        name: str,
        *,
        status: str | None = None,
        page: int | None = None,
        per_page: int | None = None,
        scope: str | None = None,
    ) -> dict[str, Any]:
        return self.call(
            "GET",
            f"/workflows/{_q(name)}/instances",
            params={"status": status, "page": page, "per_page": per_page, "scope": scope},
        )

    def tenants(
        self,
        *,
        workflow: str | None = None,
        order: str | None = None,
        page: int | None = None,
        per_page: int | None = None,
    ) -> dict[str, Any]:
        """A page of tenants with their usage and limits (the whole envelope)."""
        return self.call(
            "GET",
            "/tenants",
            params={"workflow": workflow, "order": order, "page": page, "per_page": per_page},
        )

    def resolve(self, name: str, id: str, scope: str | None) -> tuple[str, str | None]:
        """``latest`` -> the newest instance's id and scope; any other id as it is."""
        if id != "latest":
            return id, scope
        listing = self.list_instances(name, per_page=1, scope=scope)["result"]
        if not listing:
            raise AdminError(f"workflow {name!r} has no instances")
        return listing[0]["id"], listing[0].get("scope", scope)

    def instance(self, name: str, id: str, *, scope: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "GET", f"/workflows/{_q(name)}/instances/{_q(id)}", params={"scope": scope}
        )["result"]
        return result

    def change_status(
        self,
        name: str,
        id: str,
        action: str,
        *,
        scope: str | None = None,
        rollback: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"status": action}
        if rollback:
            body["rollback"] = True
        result: dict[str, Any] = self.call(
            "PATCH",
            f"/workflows/{_q(name)}/instances/{_q(id)}/status",
            params={"scope": scope},
            body=body,
            send_body=True,
        )["result"]
        return result

    def send_event(
        self,
        name: str,
        id: str,
        event_type: str,
        payload: Any = None,
        *,
        has_payload: bool = False,
        scope: str | None = None,
    ) -> None:
        self.call(
            "POST",
            f"/workflows/{_q(name)}/instances/{_q(id)}/events/{_q(event_type)}",
            params={"scope": scope},
            body=payload,
            send_body=has_payload,
        )

    def delete_instance(self, name: str, id: str, *, scope: str | None = None) -> None:
        self.call("DELETE", f"/workflows/{_q(name)}/instances/{_q(id)}", params={"scope": scope})

    def logs(
        self,
        name: str,
        id: str,
        *,
        after: str | int | None = None,
        step: str | None = None,
        count: int | None = None,
        attempt: int | None = None,
        limit: int | None = None,
        scope: str | None = None,
    ) -> dict[str, Any]:
        """A page of what the instance's runs printed (see ``host/logs_api.py``)."""
        result: dict[str, Any] = self.call(
            "GET",
            f"/workflows/{_q(name)}/instances/{_q(id)}/logs",
            params={
                "after": after,
                "step": step,
                "count": count,
                "attempt": attempt,
                "limit": limit,
                "scope": scope,
            },
        )["result"]
        return result


def _status(status: str | None) -> Text:
    return Text(str(status), style=_STATUS_STYLE.get(str(status), ""))


def _when(value: str | None) -> str:
    return "" if not value else value.replace("T", " ").replace("Z", "")[:23]


def _seconds(start: str | None, end: str | None) -> float | None:
    """Seconds between two of the API's ISO times (None if either is missing)."""
    if not start or not end:
        return None
    try:
        a = _dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = _dt.datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (b - a).total_seconds()


def _duration(seconds: float | None) -> str:
    """``12 ms``, ``1.50 s``, ``3m 05s``, ``2h 01m``: how long, at a glance."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _counts(counts: dict[str, int]) -> Text:
    out = Text()
    for status, n in counts.items():
        if n:
            if out:
                out.append(" · ")
            out.append(f"{status} {n}", style=_STATUS_STYLE.get(status, ""))
    return out or Text("none", style="dim")


def _limits(limits: Any) -> Text:
    """A tenant's limits, ``name=value`` each (a dash when none are set)."""
    if not limits:
        return Text("—", style="dim")
    if isinstance(limits, dict):
        return Text(", ".join(f"{k}={v}" for k, v in limits.items()))
    return Text(_short(limits))


class Printer:
    """What the commands print: tables for people, or the JSON result with ``--json``."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(highlight=False, soft_wrap=False)
        if not self.console.is_terminal:
            self.console.width = max(self.console.width, 160)

    def json(self, value: Any) -> None:
        print(json.dumps(value, indent=2))

    def line(self, text: str) -> None:
        self.console.print(text, markup=False)

    def workflows(self, workflows: list[dict[str, Any]]) -> None:
        if self.as_json:
            return self.json(workflows)
        table = Table(title=None, show_edge=False, pad_edge=False)
        for column in ("Name", "Class", "Binding", "Instances"):
            table.add_column(column, no_wrap=column != "Instances")
        for wf in workflows:
            table.add_row(
                wf["name"],
                wf.get("class_name", ""),
                wf.get("binding", ""),
                _counts(wf.get("instances") or {}),
            )
        self.console.print(table)
        return None

    def workflow(self, wf: dict[str, Any]) -> None:
        if self.as_json:
            return self.json(wf)
        self.line(f"Workflow  {wf['name']}")
        self.line(f"Class     {wf.get('class_name', '')}")
        self.line(f"Script    {wf.get('script_name', '')}")
        table = Table(show_edge=False, pad_edge=False)
        table.add_column("Status")
        table.add_column("Instances", justify="right")
        for status, n in (wf.get("instances") or {}).items():
            table.add_row(_status(status), str(n))
        self.console.print(table)
        return None

    def instances(self, name: str, envelope: dict[str, Any]) -> None:
        if self.as_json:
            return self.json(envelope["result"])
        rows = envelope["result"]
        info = envelope.get("result_info") or {}
        if not rows:
            self.line(f"No instances of {name}.")
            return None
        table = Table(show_edge=False, pad_edge=False)
        for column in ("Id", "Status", "Created", "Ended", "Scope"):
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(
                row["id"],
                _status(row.get("status")),
                _when(row.get("created_on")),
                _when(row.get("ended_on")),
                (row.get("scope") or "")[:14],
            )
        self.console.print(table)
        self.line(
            f"page {info.get('page', 1)} of {info.get('total_pages', 1)} · "
            f"{info.get('total_count', len(rows))} instance(s)"
        )
        return None

    def tenants(self, envelope: dict[str, Any]) -> None:
        """Tenants with their usage (live, running, waiting, finished, steps), this node's
        throttled creates and their limits."""
        if self.as_json:
            return self.json(envelope["result"])
        rows = envelope["result"]
        info = envelope.get("result_info") or {}
        if not rows:
            self.line("No tenants.")
            return None
        table = Table(show_edge=False, pad_edge=False)
        for column in ("Tenant", "Scope"):
            table.add_column(column, no_wrap=True)
        for column in ("Live", "Running", "Waiting", "Finished", "Steps", "Throttled"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("Limits")
        table.add_column("Last active", no_wrap=True)
        for row in rows:
            tenant = row.get("tenant")
            table.add_row(
                Text(tenant) if tenant else Text("(no tenant)", style="dim"),
                (row.get("scope") or "")[:12],
                f"{row.get('live', 0):,}",
                Text(f"{row.get('running', 0):,}", style="cyan" if row.get("running") else ""),
                Text(f"{row.get('waiting', 0):,}", style="yellow" if row.get("waiting") else ""),
                f"{row.get('finished', 0):,}",
                f"{row.get('steps', 0):,}",
                Text(f"{row.get('throttled', 0):,}", style="red" if row.get("throttled") else ""),
                _limits(row.get("limits")),
                _when(row.get("last_active_on")),
            )
        self.console.print(table)
        totals = (info.get("totals") or {}).get("instances") or {}
        self.line(
            f"page {info.get('page', 1)} of {info.get('total_pages', 1)} · "
            f"{info.get('total_count', len(rows)):,} tenant(s) · by {info.get('order', 'live')}"
            f" · {sum(totals.values()):,} instance(s) in all"
        )
        return None

    def instance(self, inst: dict[str, Any]) -> None:
        if self.as_json:
            return self.json(inst)
        self.console.print(Text("Id       ") + Text(inst["id"]))
        self.console.print(Text("Status   ") + _status(inst.get("status")))
        for label, key in (("Scope", "scope"), ("Created", "created_on"), ("Started", "start")):
            if inst.get(key):
                self.line(f"{label:<9}{_when(inst[key]) if key != 'scope' else inst[key]}")
        if inst.get("end"):
            self.line(f"{'Ended':<9}{_when(inst['end'])}")
        self.line(f"{'Params':<9}{_short(inst.get('params'), 200)}")
        if inst.get("output") is not None:
            self.line(f"{'Output':<9}{_short(inst['output'], 200)}")
        if inst.get("error"):
            self.line(f"{'Error':<9}{inst['error'].get('name')}: {inst['error'].get('message')}")
            self._traceback(inst["error"])
        rollback = inst.get("rollback")
        if rollback:
            failed = rollback.get("error")
            why = f" ({failed.get('name')}: {failed.get('message')})" if failed else ""
            self.line(f"{'Rollback':<9}{rollback.get('outcome')}{why}")
        steps = inst.get("steps") or []
        if not steps:
            self.line("No steps yet.")
            return None
        table = Table(show_edge=False, pad_edge=False)
        for column in ("Step", "#", "Type", "State", "Started", "Duration", "Attempt", "Result"):
            table.add_column(column, no_wrap=column not in ("Result", "Step"))
        for step in steps:
            if step.get("error"):
                result = Text(
                    f"{step['error'].get('name')}: {step['error'].get('message')}", style="red"
                )
            elif step.get("sensitive") and step.get("output") is not None:
                # The API sent "[REDACTED]" (Cloudflare's form); say why.
                result = Text(str(step["output"])) + Text(" (sensitive output)", style="dim")
            elif step.get("output") is not None:
                result = Text(_short(step["output"]))
            elif step.get("wake_at"):
                result = Text(f"until {_when(step['wake_at'])}", style="dim")
            else:
                result = Text("")
            table.add_row(
                step["name"],
                str(step.get("count", 1)),
                step.get("type", ""),
                _status(step.get("state")),
                _when(step.get("start"))[11:],
                _duration(_seconds(step.get("start"), step.get("end"))),
                str(step.get("attempt") or ""),
                result,
            )
        self.console.print(table)
        for step in steps:
            attempts = step.get("attempts") or []
            if len(attempts) > 1 or any(not a.get("success") for a in attempts):
                self._attempts(step, attempts)
        for step in steps:
            error = step.get("error")
            if error and error.get("traceback") and error != inst.get("error"):
                self.line("")
                self.line(f"Traceback of {step['name']} #{step.get('count', 1)}")
                self._traceback(error)
        return None

    def _traceback(self, error: dict[str, Any]) -> None:
        """The traceback of an error (the workflow's frames), indented, when it has one."""
        text = error.get("traceback")
        if text:
            for line in str(text).splitlines():
                self.console.print(Text("  " + line, style="dim"))

    def log_lines(self, page: dict[str, Any]) -> None:
        """A page of an instance's lines: one line each (JSON Lines with ``--json``)."""
        for line in page.get("lines") or []:
            if self.as_json:
                print(json.dumps(line), flush=True)
                continue
            step = line.get("step")
            where = "" if step is None else f"{step['name']} #{step.get('count', 1)}"
            if step is not None and line.get("attempt"):
                where += f" try {line['attempt']}"
            stream = str(line.get("stream", ""))
            style = (
                "red"
                if stream in ("stderr", "ERROR", "CRITICAL")
                else "yellow"
                if stream in ("WARNING", "dwf")
                else "dim"
            )
            text = Text(_when(line.get("time"))[11:] + " ", style="dim")
            text.append(f"{stream:<7} ", style=style)
            if where:
                text.append(f"[{where}] ", style="cyan")
            text.append(str(line.get("message", "")))
            self.console.print(text, soft_wrap=True)

    def _attempts(self, step: dict[str, Any], attempts: list[dict[str, Any]]) -> None:
        """The attempts of one step that did not simply succeed at its first try."""
        self.line("")
        self.line(f"Attempts of {step['name']} #{step.get('count', 1)}")
        table = Table(show_edge=False, pad_edge=False)
        for column in ("Attempt", "Started", "Duration", "Outcome", "Then waited"):
            table.add_column(column, no_wrap=True)
        omitted = step.get("attempts_omitted") or 0
        for i, a in enumerate(attempts):
            if omitted and i > 0 and a.get("attempt", 0) - attempts[i - 1].get("attempt", 0) > 1:
                table.add_row(Text(f"... {omitted} more", style="dim"), "", "", "", "")
            error = a.get("error")
            outcome = (
                Text("ok", style="green")
                if a.get("success")
                else Text(f"{error.get('name')}: {error.get('message')}", style="red")
                if error
                else Text("failed", style="red")
            )
            delay = a.get("retry_delay_ms")
            table.add_row(
                str(a.get("attempt", "")),
                _when(a.get("start")),
                _duration(_seconds(a.get("start"), a.get("end"))),
                outcome,
                "" if delay is None else _duration(delay / 1000),
            )
        self.console.print(table)
