"""The admin API: wrangler's local explorer API for Workflows, over the engine's queries.

Mounted at ``/cdn-cgi/local/explorer/api`` (so ``wrangler workflows ... --local`` works against
``dwf dev``), with Cloudflare's envelope ``{"success", "errors", "messages", "result"}``::

    GET    /workflows                                         workflows, with instance counts
    GET    /workflows/:name                                   one workflow, counts by status
    DELETE /workflows/:name                                   delete all its instances
    GET    /workflows/:name/instances                         ?page, per_page, status, dates, id
    GET    /workflows/:name/tenants                           its tenants' usage (ours)
    GET    /tenants                                           every tenant's usage (ours)
    POST   /workflows/:name/instances                         {"id"?, "params"?, "retention"?}
    POST   /workflows/:name/instances/batch/delete            {"instances": [ids]}
    GET    /workflows/:name/instances/:id                     status, params, output, error, steps
    DELETE /workflows/:name/instances/:id
    PATCH  /workflows/:name/instances/:id/status              {"status": "pause" ...}
    POST   /workflows/:name/instances/:id/events/:type        body: the payload (JSON)
    GET    /workflows/:name/instances/:id/logs                what its runs printed (ours)
    GET    /workers/:id/logs                                  a tenant worker's output (ours)
    GET    /openapi.json                                      this API's OpenAPI description

Scopes: an instance's identity is ``(workflow, scope, id)``; the dispatch library gives each
tenant its own scope, so two tenants may both own an instance ``order-1``. This API is trusted and
sees every scope: listings include each instance's ``scope``; an instance is addressed by its id
alone when that id exists in one scope only, and otherwise needs ``?scope=<scope>`` (400 naming
the scopes when it is ambiguous). ``?scope=`` also filters listings and chooses the scope of a
created instance; when absent, an instance created with params in the dispatch envelope
(``{"__dispatcherMetadata": ..., "params": ...}``) goes to that tenant's scope, any other to the
unscoped one (the raw binding's).

Error codes: 10001 internal or invalid request, 10400 invalid input, 10409 conflict (already
exists, cannot terminate), 10429 refused by the tenant's policy (HTTP 429, with ``Retry-After``
when waiting helps: ``create_rate``; ``max_live`` and ``create_burst`` do not pass by waiting
alone), 10501 workflow or instance not found, 7003 no such route.

Everything read comes from ``engine.queries`` (:mod:`dynamic_workflows.queries`); every change
goes through the engine's actions (``create``, ``control``, ``send_event``, ``delete``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, request_response
from starlette.types import Receive, Scope, Send

from .. import Status
from ..binding import restart_point
from ..core.codec import SerializationError, decode, encode
from ..core.journal import StepKind, StepState
from ..core.retention import parse_retention
from ..core.stepconfig import SENSITIVE_OUTPUT
from ..dispatch import METADATA_KEY, DynamicWorkflowEntrypoint, scope_of
from ..errors import (
    CannotTerminateError,
    ConfigurationError,
    DynamicWorkflowsError,
    InstanceAlreadyExistsError,
    InstanceNotFoundError,
    InvalidQueryError,
    TenantLimitError,
    UnknownWorkflowError,
    WorkflowError,
)
from ..queries import MAX_LIMIT, InstanceView, StepView
from .live import LiveProject
from .logs_api import error_json, instance_logs_query, page_json, ring_json
from .project import Project
from .tenants import dispatcher_metadata, tenant_json, tenant_label, usage_info

__all__ = ["APIError", "AdminAPI", "envelope_error", "envelope_ok", "method_route"]

log = logging.getLogger("dynamic_workflows.host")

CODE_INTERNAL = 10001
CODE_INVALID = 10400
CODE_CONFLICT = 10409
CODE_TENANT_LIMIT = 10429
CODE_NOT_FOUND = 10501
CODE_NO_ROUTE = 7003

LIST_STATUSES = (
    Status.QUEUED,
    Status.RUNNING,
    Status.PAUSED,
    Status.ERRORED,
    Status.TERMINATED,
    Status.COMPLETE,
    Status.WAITING_FOR_PAUSE,
    Status.WAITING,
)
"""The statuses counted per workflow and accepted by ``?status=`` (the spec's enum)."""

ACTIONS = ("pause", "resume", "terminate", "restart")
_STEP_TYPES = {StepKind.DO: "step", StepKind.SLEEP: "sleep", StepKind.WAIT: "waitForEvent"}


class APIError(Exception):
    """An error answered in the envelope: HTTP ``status``, Cloudflare-style ``code``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class JSONBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode(content)


def envelope_ok(result: Any, status: int = 200, **extra: Any) -> Response:
    """A success envelope around ``result``."""
    return JSONBody(
        {"success": True, "errors": [], "messages": [], "result": result, **extra}, status
    )


def envelope_error(status: int, code: int, message: str) -> Response:
    """A failure envelope with one error."""
    return JSONBody(
        {
            "success": False,
            "errors": [{"code": code, "message": message}],
            "messages": [],
            "result": None,
        },
        status,
    )


def iso(ts: float | None) -> str | None:
    """A timestamp as ISO 8601 UTC with milliseconds and ``Z``, as Cloudflare writes them."""
    if ts is None:
        return None
    moment = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_date(value: str, field: str) -> float:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise APIError(
            400, CODE_INVALID, f"{field}: {value!r} is not an ISO 8601 date-time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return moment.timestamp()


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise APIError(400, CODE_INVALID, f"{name}: {raw!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise APIError(400, CODE_INVALID, f"{name}: must be {bounds}, got {value}")
    return value


async def _json_body(request: Request, *, required: bool) -> Any:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise APIError(400, CODE_INVALID, "request body: a JSON object is required")
        return None
    try:
        return decode(raw)
    except Exception as exc:
        raise APIError(400, CODE_INVALID, f"request body: not valid JSON ({exc})") from None


def instance_summary(instance: InstanceView) -> dict[str, Any]:
    """An instance as listed: the spec's ``id``/``status``/``created_on``, plus its scope and
    the readable form of its tenant's dispatcher metadata (``tenant``, None without)."""
    return {
        "id": instance.id,
        "status": instance.status,
        "created_on": iso(instance.created_at),
        "modified_on": iso(instance.updated_at),
        "started_on": iso(instance.started_at),
        "ended_on": iso(instance.ended_at),
        "scope": instance.scope,
        "tenant": tenant_label(dispatcher_metadata(instance)),
    }


def step_json(step: StepView) -> dict[str, Any]:
    """One journal entry for the API: our fields plus Cloudflare's ``type``/``success``.

    A step declared ``sensitive: "output"`` has ``"sensitive": "output"`` (also in its
    ``config`` while it runs, as Cloudflare echoes the step's config) and its ``output`` is
    ``"[REDACTED]"`` (redacted by the query layer, before it gets here)."""
    # The query layer reports a sleep whose time has come as done (the journal keeps it
    # "sleeping"): such a sleep is over, and ended at its wake-up time.
    slept = step.kind == StepKind.SLEEP and step.state == StepState.DONE
    finished = step.state in (StepState.DONE, StepState.FAILED)
    success = (
        None
        if slept  # a sleep has no outcome
        else True
        if step.state == StepState.DONE
        else False
        if step.state == StepState.FAILED
        else None
    )
    output = step.value
    if step.kind == StepKind.WAIT and isinstance(output, dict):
        stamp = output.get("timestamp")
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            output = {**output, "timestamp": iso(stamp)}  # stored as epoch seconds
    view: dict[str, Any] = {
        "name": step.name,
        "count": step.count,
        "type": _STEP_TYPES.get(step.kind, step.kind),
        "kind": step.kind,
        "state": step.state,
        "attempt": step.attempt,
        "finished": finished,
        "success": success,
        "output": output,
        "error": None if step.error is None else error_json(step.error),
        "wake_at": iso(step.wake_at),
        "event_type": step.event_type,
        # wrangler's `instances describe` reads these: Cloudflare's {start, end, success,
        # error} per attempt (plus its number and the wait before the next one), the step's
        # start and end (a sleep's end is its wake-up time, a wait's its event or timeout).
        "start": iso(step.started_at),
        "end": iso(step.ended_at),
        "attempts": [
            {
                "attempt": a.attempt,
                "start": iso(a.started_at),
                "end": iso(a.ended_at),
                "success": a.success,
                "error": None if a.error is None else error_json(a.error),
                "retry_delay_ms": None if a.delay is None else round(a.delay * 1000),
            }
            for a in step.attempts
        ],
        "attempts_total": step.attempts_total,
        "attempts_omitted": step.attempts_omitted,
        "config": None if success is not None or step.kind != StepKind.DO else {"retries": {}},
        "sensitive": SENSITIVE_OUTPUT if step.sensitive else None,
    }
    if step.has_rollback:  # (ours: the step registered a rollback handler)
        view["has_rollback"] = True
    if step.sensitive and view["config"] is not None:
        view["config"]["sensitive"] = SENSITIVE_OUTPUT
    return view


Handler = Callable[[Request, Project], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def method_route(path: str, **endpoints: Endpoint) -> Route:
    """One route for ``path`` whose ``endpoints`` are keyed by method (``GET`` also answers
    ``HEAD``). Any other method is a 405 whose ``Allow`` names every method of the path (RFC
    9110, 15.5.6): separate Starlette routes for one path would each name only their own."""
    if "GET" in endpoints and "HEAD" not in endpoints:
        endpoints = {**endpoints, "HEAD": endpoints["GET"]}
    allow = ", ".join(endpoints)

    async def endpoint(request: Request) -> Response:
        chosen = endpoints.get(request.method)
        if chosen is None:
            raise HTTPException(405, headers={"Allow": allow})
        return await chosen(request)

    # As an ASGI app (not a function) the route takes every method and leaves them to us.
    return Route(path, _ASGIEndpoint(endpoint), name=path)


class _ASGIEndpoint:
    def __init__(self, endpoint: Endpoint) -> None:
        self.app = request_response(endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


@cache
def _openapi() -> bytes:
    return Path(__file__).with_name("openapi.json").read_bytes()


async def openapi(request: Request) -> Response:
    """This API's OpenAPI description (wrangler's local explorer API, its workflows part): what
    clients and API fuzzers (schemathesis) are generated from."""
    return Response(_openapi(), media_type="application/json")


class AdminAPI:
    """The routes of the admin API over the live project (see the module docstring)."""

    def __init__(self, live: LiveProject) -> None:
        self.live = live

    def routes(self) -> list[BaseRoute]:
        h = self._handle
        base = "/workflows/{workflow_name}"
        inst = base + "/instances/{instance_id}"
        return [
            method_route("/workflows", GET=h(self.list_workflows)),
            method_route(base, GET=h(self.workflow_details), DELETE=h(self.delete_workflow)),
            method_route(base + "/instances/batch/delete", POST=h(self.batch_delete)),
            method_route(base + "/tenants", GET=h(self.list_tenants)),
            method_route("/tenants", GET=h(self.list_all_tenants)),
            method_route(
                base + "/instances", GET=h(self.list_instances), POST=h(self.create_instance)
            ),
            method_route(inst, GET=h(self.instance_details), DELETE=h(self.delete_instance)),
            method_route(inst + "/status", PATCH=h(self.change_status)),
            method_route(inst + "/events/{event_type}", POST=h(self.send_event)),
            method_route(inst + "/logs", GET=h(self.instance_logs)),
            method_route("/workers/{worker_id}/logs", GET=h(self.worker_logs)),
            method_route("/openapi.json", GET=openapi),
        ]

    def _handle(self, handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request, self.live.project)
            except APIError as exc:
                return envelope_error(exc.status, exc.code, exc.message)
            except (InstanceNotFoundError, UnknownWorkflowError) as exc:
                return envelope_error(404, CODE_NOT_FOUND, str(exc))
            except (InstanceAlreadyExistsError, CannotTerminateError) as exc:
                return envelope_error(409, CODE_CONFLICT, str(exc))
            except TenantLimitError as exc:
                response = envelope_error(429, CODE_TENANT_LIMIT, str(exc))
                if exc.retry_after is not None:
                    response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
                return response
            except (WorkflowError, SerializationError, InvalidQueryError) as exc:
                return envelope_error(400, CODE_INVALID, str(exc))
            except DynamicWorkflowsError as exc:
                log.exception("admin API: %s %s failed", request.method, request.url.path)
                return envelope_error(500, CODE_INTERNAL, str(exc))
            except Exception as exc:
                log.exception("admin API: %s %s failed", request.method, request.url.path)
                return envelope_error(500, CODE_INTERNAL, f"internal error: {type(exc).__name__}")

        endpoint.__name__ = handler.__name__
        return endpoint

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _workflow(request: Request, project: Project) -> str:
        name = str(request.path_params["workflow_name"])
        if project.config.workflow(name) is None:
            raise APIError(404, CODE_NOT_FOUND, f"Workflow '{name}' not found.")
        return name

    @staticmethod
    async def _instance(request: Request, project: Project, workflow: str) -> InstanceView:
        instance_id = str(request.path_params["instance_id"])
        return await _find(project, workflow, instance_id, request.query_params.get("scope"))

    @staticmethod
    async def _counts(project: Project, workflow: str, scope: str | None = None) -> dict[str, int]:
        counted = await project.engine.queries.count_instances(workflow, scope=scope)
        counts = {status: counted.get(status) for status in LIST_STATUSES}
        for status, n in counted.by_status.items():  # e.g. "unknown": shown, not hidden
            counts.setdefault(status, n)
        return counts

    # -- workflows ----------------------------------------------------------------------------

    async def list_workflows(self, request: Request, project: Project) -> Response:
        result = []
        for wf in project.config.workflows:
            result.append(
                {
                    "name": wf.name,
                    "class_name": wf.class_name,
                    "script_name": project.config.name,
                    "binding": wf.binding,
                    "schedules": list(wf.schedules),
                    "instances": await self._counts(project, wf.name),
                }
            )
        return envelope_ok(result, result_info={"count": len(result)})

    async def workflow_details(self, request: Request, project: Project) -> Response:
        name = self._workflow(request, project)
        wf = project.config.workflow(name)
        assert wf is not None
        return envelope_ok(
            {
                "name": wf.name,
                "class_name": wf.class_name,
                "script_name": project.config.name,
                "binding": wf.binding,
                "schedules": list(wf.schedules),  # its cron expressions (wrangler's)
                "instances": await self._counts(project, wf.name),
            }
        )

    async def delete_workflow(self, request: Request, project: Project) -> Response:
        name = self._workflow(request, project)
        deleted = 0
        while True:
            page = await project.engine.queries.list_instances(name, limit=500)
            if not page.instances:
                break
            for instance in page.instances:
                try:
                    await project.engine.delete(instance.row)
                    deleted += 1
                except InstanceNotFoundError:
                    pass
        return envelope_ok({"status": "ok", "success": True, "deleted": deleted})

    # -- instances ----------------------------------------------------------------------------

    async def list_instances(self, request: Request, project: Project) -> Response:
        name = self._workflow(request, project)
        page = _int_param(request, "page", 1, 1, None)
        per_page = _int_param(request, "per_page", 25, 1, 100)
        status = request.query_params.get("status") or None
        if status is not None and status not in LIST_STATUSES:
            raise APIError(
                400, CODE_INVALID, f"status: {status!r} is not one of {', '.join(LIST_STATUSES)}"
            )
        scope = request.query_params.get("scope")
        start = request.query_params.get("date_start")
        end = request.query_params.get("date_end")
        since = _parse_date(start, "date_start") if start else None
        until = _parse_date(end, "date_end") if end else None
        counts = await self._counts(project, name, scope)
        instance_id = request.query_params.get("id")
        if instance_id:  # ?id=: that id in every scope (the dashboard's search)
            found = [
                i
                for i in await project.engine.queries.find_instances(name, instance_id)
                if (scope is None or i.scope == scope)
                and (status is None or i.status == status)
                and (since is None or i.created_at >= since)
                and (until is None or i.created_at <= until)
            ]
            first = (page - 1) * per_page
            instances, total = found[first : first + per_page], len(found)
        else:
            # A page past the last gives an empty page, however large its number (no overflow).
            listed = await project.engine.queries.list_instances(
                name,
                scope=scope,
                status=status,
                created_since=since,
                created_until=until,
                limit=per_page,
                offset=(page - 1) * per_page,
            )
            instances, total = listed.instances, listed.total
        return envelope_ok(
            [instance_summary(i) for i in instances],
            result_info={
                "page": page,
                "per_page": per_page,
                "count": len(instances),
                "total_count": total,
                "total_pages": max(1, math.ceil(total / per_page)),
                "status_counts": counts,
            },
        )

    async def list_tenants(self, request: Request, project: Project) -> Response:
        """The workflow's tenants (scopes) with their usage: ``?order=live|instances|steps|
        recent``, ``page``, ``per_page`` (1 to 1000), ``steps=false`` not to count the steps
        (the costly part of the read; they are then 0)."""
        return await self._tenants(request, project, self._workflow(request, project))

    async def list_all_tenants(self, request: Request, project: Project) -> Response:
        """Every tenant's usage over all workflows (``?workflow=`` for one), as above."""
        name = request.query_params.get("workflow") or None
        if name is not None and project.config.workflow(name) is None:
            raise APIError(404, CODE_NOT_FOUND, f"Workflow '{name}' not found.")
        return await self._tenants(request, project, name)

    @staticmethod
    async def _tenants(request: Request, project: Project, workflow: str | None) -> Response:
        page = _int_param(request, "page", 1, 1, None)
        per_page = _int_param(request, "per_page", 25, 1, MAX_LIMIT)
        order = request.query_params.get("order") or "live"
        steps = request.query_params.get("steps", "true")
        if steps not in ("true", "false"):
            raise APIError(400, CODE_INVALID, f"steps: must be true or false, got {steps!r}")
        usage = await project.engine.queries.tenant_usage(
            workflow,
            order=order,
            limit=per_page,
            offset=(page - 1) * per_page,
            steps=steps == "true",
        )
        return envelope_ok(
            [tenant_json(t, iso) for t in usage.tenants], result_info=usage_info(usage, order)
        )

    async def create_instance(self, request: Request, project: Project) -> Response:
        name = self._workflow(request, project)
        body = await _json_body(request, required=False)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise APIError(400, CODE_INVALID, "request body: must be a JSON object")
        unknown = sorted(set(body) - {"id", "params", "retention"})
        if unknown:
            raise APIError(400, CODE_INVALID, f"request body: unknown field(s) {unknown}")
        instance_id = body.get("id")
        if instance_id is not None and not isinstance(instance_id, str):
            raise APIError(400, CODE_INVALID, "id: must be a string")
        retention = body.get("retention")
        try:  # (the binding's rules; the engine applies them again, over the defaults)
            parse_retention(retention)
        except ConfigurationError as exc:  # names the field: retention.successRetention: ...
            raise APIError(400, CODE_INVALID, str(exc)) from None
        params = body.get("params")
        enveloped = isinstance(params, dict) and METADATA_KEY in params and "params" in params
        if not enveloped and issubclass(
            project.workflow_classes.get(name, object), DynamicWorkflowEntrypoint
        ):
            raise APIError(400, CODE_INVALID, _needs_envelope(name))
        scope = request.query_params.get("scope")
        if scope is None:
            scope = scope_of(params[METADATA_KEY]) if isinstance(params, dict) and enveloped else ""
        rows = await project.engine.create(
            name, scope, [(instance_id or None, params)], retention=[retention]
        )
        row = rows[0]
        return envelope_ok({"id": row.id, "scope": row.scope, "status": row.status})

    async def batch_delete(self, request: Request, project: Project) -> Response:
        name = self._workflow(request, project)
        body = await _json_body(request, required=True)
        ids = body.get("instances") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise APIError(400, CODE_INVALID, "instances: must be a list of instance ids")
        if not 1 <= len(ids) <= 100:
            raise APIError(400, CODE_INVALID, f"instances: must hold 1 to 100 ids, got {len(ids)}")
        scope = request.query_params.get("scope")
        deleted: list[dict[str, str]] = []
        errors: list[dict[str, Any]] = []
        for instance_id in ids:
            try:
                instance = await _find(project, name, instance_id, scope)
                await project.engine.delete(instance.row)
                deleted.append({"id": instance_id})
            except InstanceNotFoundError:
                errors.append(
                    {
                        "id": instance_id,
                        "code": CODE_NOT_FOUND,
                        "message": f"Workflow instance '{instance_id}' not found.",
                    }
                )
            except APIError as exc:
                errors.append({"id": instance_id, "code": exc.code, "message": exc.message})
        return envelope_ok({"deleted": deleted, "errors": errors})

    async def instance_details(self, request: Request, project: Project) -> Response:
        name = self._workflow(request, project)
        described = await project.engine.queries.describe(
            await self._instance(request, project, name)
        )
        instance = described.instance
        steps = [step_json(s) for s in described.steps]
        details: dict[str, Any] = {
            **instance_summary(instance),
            "params": instance.params,
            "output": instance.output,
        }
        if instance.error is not None:  # the spec's "error" is an object, never null: absent
            details["error"] = error_json(instance.error)  # + "traceback" (ours)
        if instance.rollback is not None:  # (absent unless a rollback phase ran, as status())
            details["rollback"] = instance.rollback
        return envelope_ok(
            {
                **details,
                "queued": iso(instance.created_at),
                "start": iso(instance.started_at),
                "end": iso(instance.ended_at),
                "wake_at": iso(instance.wake_at),
                "schedule": instance.schedule,  # its cron tick's, as in its event (or null)
                "retain_until": iso(instance.retain_until),  # ours: when retention deletes it
                "steps": steps,
                "step_count": len(steps),
            }
        )

    async def delete_instance(self, request: Request, project: Project) -> Response:
        name = self._workflow(request, project)
        instance = await self._instance(request, project, name)
        await project.engine.delete(instance.row)
        return envelope_ok({"success": True})

    async def change_status(self, request: Request, project: Project) -> Response:
        name = self._workflow(request, project)
        body = await _json_body(request, required=True)
        if not isinstance(body, dict):
            raise APIError(400, CODE_INVALID, "request body: must be a JSON object")
        # The spec names the field "status"; newer wrangler versions send "action".
        action = body.get("status", body.get("action"))
        if action not in ACTIONS:
            raise APIError(
                400, CODE_INVALID, f"status: must be one of {', '.join(ACTIONS)}, got {action!r}"
            )
        if "rollback" in body and action != "terminate":
            # (Cloudflare's local explorer: "'rollback' is only valid when terminating.")
            raise APIError(400, CODE_INVALID, "'rollback' is only valid when terminating.")
        rollback = body.get("rollback", False)
        if not isinstance(rollback, bool):
            raise APIError(400, CODE_INVALID, f"rollback: must be true or false, got {rollback!r}")
        restart_from = None
        if body.get("from") is not None:
            if action != "restart":
                raise APIError(400, CODE_INVALID, "from: only valid when restarting")
            try:
                restart_from = restart_point({"from": body["from"]})
            except WorkflowError as exc:
                raise APIError(400, CODE_INVALID, f"from: {exc}") from None
        instance = await self._instance(request, project, name)
        after = await project.engine.control(
            instance.row, str(action), restart_from=restart_from, rollback=rollback
        )
        return envelope_ok({"status": after, "timestamp": iso(project.engine.clock.now())})

    async def instance_logs(self, request: Request, project: Project) -> Response:
        name = self._workflow(request, project)
        query = instance_logs_query(request)  # (InvalidQueryError: a 400)
        instance = await self._instance(request, project, name)
        page = await project.engine.queries.logs(instance, **query)
        return envelope_ok(page_json(instance, page))

    async def worker_logs(self, request: Request, project: Project) -> Response:
        worker = str(request.path_params["worker_id"])
        try:
            after = int(request.query_params.get("after") or 0)
        except ValueError:
            raise APIError(400, CODE_INVALID, "after: not an integer") from None
        for loader in project.loaders.values():
            ring = loader.logs.get(worker)
            if ring is not None:
                return envelope_ok(ring_json(worker, ring.since(after), ring.dropped))
        raise APIError(404, CODE_NOT_FOUND, f"Worker '{worker}' has no output on this node.")

    async def send_event(self, request: Request, project: Project) -> Response:
        name = self._workflow(request, project)
        payload = await _json_body(request, required=False)
        instance = await self._instance(request, project, name)
        await project.engine.send_event(
            instance.row, str(request.path_params["event_type"]), payload
        )
        return envelope_ok({"success": True})


def _needs_envelope(workflow: str) -> str:
    """Why a dynamic workflow's instance cannot be created with plain params."""
    return (
        f"params: workflow '{workflow}' is a dynamic workflow (create_dynamic_workflow_entrypoint):"
        " each instance runs the code of the tenant its dispatcher metadata names, so params "
        f'must be the dispatch envelope {{"{METADATA_KEY}": <the tenant\'s metadata>, '
        '"params": <the tenant workflow\'s params>}, as wrap_workflow_binding(metadata).create() '
        "stores it; without it the instance would fail at once with "
        "MissingDispatcherMetadataError"
    )


async def _find(
    project: Project, workflow: str, instance_id: str, scope: str | None
) -> InstanceView:
    """The instance ``instance_id`` of ``workflow``, in ``scope`` or the only scope holding it."""
    queries = project.engine.queries
    if scope is not None:
        found = await queries.get_instance(workflow, scope, instance_id)
        matches = [] if found is None else [found]
    else:
        matches = await queries.find_instances(workflow, instance_id)
    if not matches:
        raise APIError(404, CODE_NOT_FOUND, f"Workflow instance '{instance_id}' not found.")
    if len(matches) > 1:
        scopes = ", ".join(repr(m.scope) for m in matches)
        raise APIError(
            400,
            CODE_INVALID,
            f"scope: instance id '{instance_id}' exists in {len(matches)} scopes ({scopes}); "
            "choose one with ?scope=<scope> (dwf: --scope)",
        )
    return matches[0]
