"""``dwf``: the command-line tool.

``dwf run FILE`` runs one workflow class from a Python file to its end, durably (SQLite in a
``.dwf`` folder beside the file, or ``--db``): stop it at any point and run the same command
with the same ``--id`` to resume where it was.

``dwf dev [DIR]`` serves a wrangler-style project (the dispatcher, the admin API, a dashboard);
``dwf serve [DIR] --db URL`` is the production form (admin API on its own port, behind a token).
``dwf workflows ...``, ``dwf instances ...`` and ``dwf tenants`` talk to either through the admin
API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from .binding import Instance
from .engine import Engine
from .errors import DynamicWorkflowsError, InstanceAlreadyExistsError
from .modules import load_module_from_source
from .queries import wait_for_status
from .storage import open_storage
from .workers import WorkflowEntrypoint

if TYPE_CHECKING:
    from .host.live import LiveProject
    from .host.metrics import HostMetrics
    from .host.project import LoaderMode, Project
    from .host.server import Listener

__all__ = ["main"]

log = logging.getLogger("dynamic_workflows.host")


def _json_arg(value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from None


def _duration_arg(value: str) -> str | int | float:
    """A duration option as the API takes it: a bare number is milliseconds (as in JSON), any
    other text a duration such as ``7 days``."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def _find_workflow(path: Path, class_name: str | None) -> type[WorkflowEntrypoint]:
    try:
        source = path.read_text()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from None
    module = load_module_from_source(path.stem, source, filename=str(path))
    found = {
        name: obj
        for name, obj in vars(module).items()
        if isinstance(obj, type)
        and issubclass(obj, WorkflowEntrypoint)
        and obj is not WorkflowEntrypoint
    }
    if class_name is not None:
        if class_name not in found:
            raise click.BadParameter(
                f"{path} has no WorkflowEntrypoint class named {class_name!r} "
                f"(found: {', '.join(sorted(found)) or 'none'})"
            )
        return found[class_name]
    if len(found) != 1:
        raise click.BadParameter(
            f"{path} defines {len(found)} WorkflowEntrypoint classes "
            f"({', '.join(sorted(found)) or 'none'}); choose one with --class"
        )
    return next(iter(found.values()))


@click.group()
@click.version_option(__version__, prog_name="dwf")
def main() -> None:
    """dynamic-workflows: durable execution for workflow code loaded at runtime."""


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--class", "class_name", help="The WorkflowEntrypoint class (if FILE has several).")
@click.option("--params", help="The instance's params, as JSON.")
@click.option(
    "--id", "instance_id", help="Instance id; an existing one is resumed, not re-created."
)
@click.option(
    "--db", help="Storage URL or SQLite path (default: FILE's folder/.dwf/state.sqlite3)."
)
@click.option(
    "--event",
    "events",
    multiple=True,
    metavar="TYPE=JSON",
    help="Send an event once the instance exists (repeatable).",
)
def run(
    file: Path,
    class_name: str | None,
    params: str | None,
    instance_id: str | None,
    db: str | None,
    events: tuple[str, ...],
) -> None:
    """Run a workflow from FILE until it completes, printing each status change."""
    workflow = _find_workflow(file, class_name)
    payload = _json_arg(params, "--params")
    parsed_events = []
    for spec in events:
        etype, sep, body = spec.partition("=")
        if not sep:
            raise click.BadParameter(f"--event {spec!r}: expected TYPE=JSON")
        parsed_events.append((etype, _json_arg(body, f"--event {etype}")))
    url = db or str(file.resolve().parent / ".dwf" / "state.sqlite3")
    try:
        status = asyncio.run(_run(workflow, url, payload, instance_id, parsed_events))
    except DynamicWorkflowsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(status, indent=2, default=str))
    sys.exit(0 if status["status"] == "complete" else 1)


async def _run(
    workflow: type[WorkflowEntrypoint],
    url: str,
    params: Any,
    instance_id: str | None,
    events: list[tuple[str, Any]],
) -> dict[str, Any]:
    engine = Engine(open_storage(url))
    binding = engine.register(workflow.__name__, workflow)
    async with engine:
        instance: Instance
        try:
            instance = await binding.create(id=instance_id, params=params)
            click.echo(f"created instance {instance.id}", err=True)
        except InstanceAlreadyExistsError:
            assert instance_id is not None
            instance = await binding.get(instance_id)
            click.echo(f"resuming instance {instance.id}", err=True)
        for etype, body in events:
            await instance.send_event(type=etype, payload=body)
        iid = instance.id
        return await wait_for_status(
            instance, on_change=lambda status: click.echo(f"  {iid}: {status}", err=True)
        )


# -- dwf dev / dwf serve ------------------------------------------------------------------------


def _loader_mode(trusted: bool, unconfined: bool) -> LoaderMode:
    if trusted and unconfined:
        raise click.UsageError("choose one of --trusted and --unconfined")
    return "in-process" if trusted else "unconfined" if unconfined else "sandbox"


def _loader_options(fn: Any) -> Any:
    fn = click.option(
        "--unconfined",
        is_flag=True,
        help="Run tenant code in worker processes WITHOUT the sandbox's confinement (for "
        "machines that cannot confine; trusted code only).",
    )(fn)
    return click.option(
        "--trusted",
        is_flag=True,
        help="Run tenant code inside the host process, unconfined (trusted code only).",
    )(fn)


def _byte_size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from .host.convert import parse_size

    try:
        size = parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    if size < 1:
        raise click.BadParameter("must be at least 1 byte", ctx, param)
    return size


def _max_body_option(fn: Any) -> Any:
    return click.option(
        "--max-body-size",
        "max_body",
        metavar="SIZE",
        default="10MiB",
        callback=_byte_size,
        show_default=True,
        help="Largest request body the dispatcher accepts; larger ones get 413 unread. At most "
        "31MiB when tenant code runs in worker processes (a body goes to a worker whole), "
        "100MiB with --trusted.",
    )(fn)


def _log_format_option(fn: Any) -> Any:
    return click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="The server's log lines: text, or one JSON object each (time, level, logger, "
        "message, and fields such as event, workflow, instance, tenant).",
    )(fn)


def _metrics_tenants_option(fn: Any) -> Any:
    return click.option(
        "--metrics-tenants",
        type=click.IntRange(min=0),
        default=20,
        show_default=True,
        help="How many tenants (those with the most live instances) get /metrics series of "
        'their own; every other tenant is summed under tenant="other".',
    )(fn)


def _check_max_body(max_body: int, mode: LoaderMode) -> None:
    """A body the host accepts must reach a tenant's worker without exhausting it."""
    from .host.convert import MAX_BODY, size_text
    from .sandbox.loader import DEFAULT_LIMITS
    from .sandbox.process import max_call_bytes

    if mode == "in-process":
        ceiling, why = MAX_BODY, "Cloudflare's limit"
    else:
        memory = (DEFAULT_LIMITS.memory_mb or 0) << 20
        # Room for the URL and headers, which travel in the same message.
        ceiling = max_call_bytes(memory) - (1 << 20)
        why = (
            f"what a tenant's worker (memory limit {size_text(memory)}) can be sent, less the "
            "request's headers; with --trusted up to 100 MiB"
        )
    if max_body > ceiling:
        raise click.BadParameter(
            f"{size_text(max_body)} is over {size_text(ceiling)}, {why}",
            param_hint="'--max-body-size'",
        )


def _serve(
    directory: Path,
    storage_url: str | None,
    mode: LoaderMode,
    listeners: Callable[[LiveProject, HostMetrics], list[Listener]],
    *,
    reload: bool,
    banner: Callable[[Project, list[Listener]], None],
    metrics_tenants: int,
) -> None:
    from .host.server import ListenError, serve_project
    from .sandbox.confine import SandboxUnavailableError

    try:
        serve_project(
            directory,
            storage_url,
            mode,
            listeners,
            reload=reload,
            banner=banner,
            metrics_tenants=metrics_tenants,
        )
    except SandboxUnavailableError as exc:
        raise click.ClickException(
            f"{exc}\n(with `--unconfined` tenant code runs in worker processes without "
            "confinement, with `--trusted` inside this process: only for code you trust)"
        ) from None
    except (DynamicWorkflowsError, ListenError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("directory", default=".", type=click.Path(path_type=Path))
@click.option("--ip", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, help="Port to listen on.")
@click.option("--db", help="Storage URL (default: DIRECTORY/.dwf/state.sqlite3).")
@click.option(
    "--reload/--no-reload",
    default=True,
    show_default=True,
    help="Reload when the config or a .py file beside main changes.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@_log_format_option
@_max_body_option
@_metrics_tenants_option
@_loader_options
def dev(
    directory: Path,
    ip: str,
    port: int,
    db: str | None,
    reload: bool,
    verbose: bool,
    log_format: str,
    max_body: int,
    metrics_tenants: int,
    trusted: bool,
    unconfined: bool,
) -> None:
    """Serve the project in DIRECTORY (wrangler.jsonc/.json/.toml) for development.

    Every request goes to the Default entrypoint of the project's main module, except
    /cdn-cgi/local/explorer/api/... (the admin API that `wrangler workflows ... --local` and
    `dwf workflows ...` speak), /cdn-cgi/local/explorer/ (a dashboard) and
    /cdn-cgi/local/metrics (Prometheus). State persists in DIRECTORY/.dwf/: stop and start
    again, and every instance carries on.
    """
    from .host.app import create_dev_app
    from .host.server import Listener, setup_logging

    mode = _loader_mode(trusted, unconfined)
    _check_max_body(max_body, mode)
    setup_logging(verbose, log_format)

    def listeners(live: LiveProject, metrics: HostMetrics) -> list[Listener]:
        app = create_dev_app(live, metrics, max_body=max_body)
        return [Listener("dev", app, ip, port, access_log=True)]

    def banner(project: Project, chosen: list[Listener]) -> None:
        url = chosen[0].url
        if ip not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "dwf dev serves its admin API without authentication, and %s is not a loopback "
                "address: anyone who can reach it can control every instance (use dwf serve)",
                ip,
            )
        log.info("%s", project.isolation)
        log.info(
            "dwf dev: %s (%s) ready on %s  ·  dashboard %s/cdn-cgi/local/explorer/  ·  state %s",
            project.config.name,
            ", ".join(w.name for w in project.config.workflows) or "no workflows",
            url,
            url,
            project.storage_url,
            extra={"event": "node.start", "url": url},
        )
        _log_schedules(project)

    _serve(
        directory,
        db,
        mode,
        listeners,
        reload=reload,
        banner=banner,
        metrics_tenants=metrics_tenants,
    )


@main.command()
@click.argument("directory", default=".", type=click.Path(path_type=Path))
@click.option(
    "--db",
    required=True,
    help="Storage URL: postgresql://... (several nodes may share it), sqlite:///path, a path, "
    "or memory://.",
)
@click.option("--ip", default="127.0.0.1", show_default=True, help="Public address.")
@click.option("--port", default=8787, show_default=True, help="Public port (the dispatcher).")
@click.option("--admin-ip", default="127.0.0.1", show_default=True, help="Admin address.")
@click.option(
    "--admin-port", type=int, help="Admin port: API, dashboard, /metrics (default: PORT + 1)."
)
@click.option(
    "--admin-token",
    envvar="DWF_ADMIN_TOKEN",
    help="Bearer token required on the admin port (or set DWF_ADMIN_TOKEN).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@_log_format_option
@_max_body_option
@_metrics_tenants_option
@_loader_options
def serve(
    directory: Path,
    db: str,
    ip: str,
    port: int,
    admin_ip: str,
    admin_port: int | None,
    admin_token: str | None,
    verbose: bool,
    log_format: str,
    max_body: int,
    metrics_tenants: int,
    trusted: bool,
    unconfined: bool,
) -> None:
    """Serve the project in DIRECTORY in production: no reload; the dispatcher on PORT, the
    admin API, dashboard and /metrics on ADMIN-PORT behind `Authorization: Bearer TOKEN`.
    SIGTERM/SIGINT: finish requests in flight, hand live runs back to the queue, exit."""
    from .host.app import create_admin_app, create_public_app
    from .host.server import Listener, setup_logging

    if not admin_token:
        raise click.UsageError(
            "dwf serve needs an admin token for its admin port: pass --admin-token TOKEN or "
            "set DWF_ADMIN_TOKEN (e.g. DWF_ADMIN_TOKEN=$(openssl rand -hex 32))"
        )
    from .host.auth import token_problem

    problem = token_problem(admin_token)
    if problem is not None:
        raise click.UsageError(
            f"--admin-token (or DWF_ADMIN_TOKEN) {problem} "
            "(e.g. DWF_ADMIN_TOKEN=$(openssl rand -hex 32))"
        )
    mode = _loader_mode(trusted, unconfined)
    _check_max_body(max_body, mode)
    setup_logging(verbose, log_format)
    token = admin_token
    aport = admin_port if admin_port is not None else port + 1

    def listeners(live: LiveProject, metrics: HostMetrics) -> list[Listener]:
        return [
            Listener("public", create_public_app(live, metrics, max_body=max_body), ip, port),
            Listener("admin", create_admin_app(live, metrics, token), admin_ip, aport),
        ]

    def banner(project: Project, chosen: list[Listener]) -> None:
        log.info("%s", project.isolation)
        log.info(
            "dwf serve: %s on %s  ·  admin API, dashboard and /metrics on %s (bearer token)",
            project.config.name,
            chosen[0].url,
            chosen[1].url,
            extra={"event": "node.start", "url": chosen[0].url},
        )
        _log_schedules(project)

    _serve(
        directory,
        db,
        mode,
        listeners,
        reload=False,
        banner=banner,
        metrics_tenants=metrics_tenants,
    )


def _log_schedules(project: Project) -> None:
    """One line per workflow with cron schedules, as the banner's sequel."""
    for wf in project.config.workflows:
        if wf.schedules:
            log.info("%s: cron %s (UTC)", wf.name, ", ".join(repr(c) for c in wf.schedules))


# -- dwf workflows / dwf instances: the admin API -----------------------------------------------


def _client_options(fn: Any) -> Any:
    fn = click.option("--json", "as_json", is_flag=True, help="Print the API's result as JSON.")(fn)
    fn = click.option(
        "--token",
        envvar="DWF_ADMIN_TOKEN",
        help="Admin token (dwf serve), or set DWF_ADMIN_TOKEN.",
    )(fn)
    return click.option(
        "--url",
        envvar="DWF_URL",
        default="http://127.0.0.1:8787",
        show_default=True,
        help="The server: dwf dev's address, or dwf serve's admin port (or set DWF_URL).",
    )(fn)


def _scope_option(fn: Any) -> Any:
    return click.option(
        "--scope",
        help="The instance's scope (tenant namespace), when its id exists in several.",
    )(fn)


def _admin(url: str, token: str | None, as_json: bool, action: Callable[..., None]) -> None:
    from .host.client import AdminClient, AdminError, Printer

    try:
        with AdminClient(url, token) as client:
            action(client, Printer(as_json))
    except AdminError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
def doctor(as_json: bool) -> None:
    """Report the sandbox layers this machine offers (and whether untrusted code may run)."""
    from .doctor import diagnose, render

    facts = diagnose()
    if as_json:
        click.echo(json.dumps(facts, indent=2))
    else:
        render(facts)
    sys.exit(0 if facts["sandbox"]["safe_for_untrusted"] else 1)


@main.command()
@click.option("--db", required=True, help="Storage URL (postgresql://..., sqlite:///...) or path.")
def migrate(db: str) -> None:
    """Create or update the database schema, printing the migrations applied. Engines migrate
    on start too; run this first when several nodes share one database."""
    from .storage.migrate import migrate_url

    try:
        report = asyncio.run(migrate_url(db))
    except DynamicWorkflowsError as exc:
        raise click.ClickException(str(exc)) from None
    for label in report.applied:
        click.echo(f"applied {label}")
    state = "now at" if report.applied else "already at"
    click.echo(f"schema {state} version {report.version}")


@main.group()
def workflows() -> None:
    """The workflows of a running `dwf dev` or `dwf serve` (through its admin API)."""


@workflows.command("list")
@_client_options
def workflows_list(url: str, token: str | None, as_json: bool) -> None:
    """List the workflows, with their instances by status."""
    _admin(url, token, as_json, lambda c, p: p.workflows(c.list_workflows()))


@workflows.command("describe")
@click.argument("name")
@_client_options
def workflows_describe(name: str, url: str, token: str | None, as_json: bool) -> None:
    """Show the workflow NAME and its instance counts."""
    _admin(url, token, as_json, lambda c, p: p.workflow(c.workflow(name)))


@workflows.command("trigger")
@click.argument("name")
@click.argument("params_json", required=False)
@click.option("--id", "instance_id", help="The new instance's id (default: a UUID).")
@click.option(
    "--success-retention",
    metavar="DURATION",
    help="Keep the instance this long once it completes ('7 days', or milliseconds); "
    "default: the workflow's, else the project's, else forever.",
)
@click.option(
    "--error-retention",
    metavar="DURATION",
    help="Keep it this long once it errors or is terminated; default as --success-retention.",
)
@_scope_option
@_client_options
def workflows_trigger(
    name: str,
    params_json: str | None,
    instance_id: str | None,
    success_retention: str | None,
    error_retention: str | None,
    scope: str | None,
    url: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Create an instance of NAME, with PARAMS_JSON as its params."""
    params = _json_arg(params_json, "PARAMS_JSON")
    # Cloudflare's create option; the server checks the durations (and names a bad one).
    retention = {
        field: _duration_arg(value)
        for field, value in (
            ("successRetention", success_retention),
            ("errorRetention", error_retention),
        )
        if value is not None
    }

    def action(client: Any, printer: Any) -> None:
        result = client.trigger(name, params, id=instance_id, scope=scope, retention=retention)
        if as_json:
            printer.json(result)
        else:
            printer.line(f"Created instance {result['id']} of {name}")

    _admin(url, token, as_json, action)


@main.command("tenants")
@click.option("--workflow", help="Only this workflow's instances (default: every workflow).")
@click.option(
    "--sort",
    "order",
    type=click.Choice(["live", "instances", "steps", "recent"]),
    default="live",
    show_default=True,
    help="Most first: live (not finished) instances, instances in all, steps, or the latest "
    "change.",
)
@click.option("--page", type=int, help="Page number (from 1).")
@click.option("--per-page", type=int, help="Tenants per page (at most 1000; default 25).")
@_client_options
def tenants(
    workflow: str | None,
    order: str,
    page: int | None,
    per_page: int | None,
    url: str,
    token: str | None,
    as_json: bool,
) -> None:
    """List the tenants (dispatcher scopes) with their usage and limits: instances live,
    running, waiting and finished, steps recorded, creates their caps throttled."""
    _admin(
        url,
        token,
        as_json,
        lambda c, p: p.tenants(
            c.tenants(workflow=workflow, order=order, page=page, per_page=per_page)
        ),
    )


@main.group()
def instances() -> None:
    """The instances of a workflow on a running `dwf dev` or `dwf serve`. ID may be `latest`."""


workflows.add_command(instances)  # wrangler's spelling: `workflows instances ...`


@instances.command("list")
@click.argument("name")
@click.option("--status", help="Only instances with this status (complete, errored, waiting...).")
@click.option("--page", type=int, help="Page number (from 1).")
@click.option("--per-page", type=int, help="Instances per page (at most 100).")
@_scope_option
@_client_options
def instances_list(
    name: str,
    status: str | None,
    page: int | None,
    per_page: int | None,
    scope: str | None,
    url: str,
    token: str | None,
    as_json: bool,
) -> None:
    """List the instances of NAME, newest first."""
    _admin(
        url,
        token,
        as_json,
        lambda c, p: p.instances(
            name,
            c.list_instances(name, status=status, page=page, per_page=per_page, scope=scope),
        ),
    )


@instances.command("describe")
@click.argument("name")
@click.argument("instance_id", metavar="ID")
@_scope_option
@_client_options
def instances_describe(
    name: str, instance_id: str, scope: str | None, url: str, token: str | None, as_json: bool
) -> None:
    """Show an instance: status, params, output or error, and its steps."""

    def action(client: Any, printer: Any) -> None:
        iid, iscope = client.resolve(name, instance_id, scope)
        printer.instance(client.instance(name, iid, scope=iscope))

    _admin(url, token, as_json, action)


def _control_command(action_name: str, past: str) -> None:
    def command(
        name: str,
        instance_id: str,
        scope: str | None,
        url: str,
        token: str | None,
        as_json: bool,
        rollback: bool = False,
    ) -> None:
        def action(client: Any, printer: Any) -> None:
            iid, iscope = client.resolve(name, instance_id, scope)
            result = client.change_status(name, iid, action_name, scope=iscope, rollback=rollback)
            if as_json:
                printer.json(result)
            elif rollback and result["status"] != "terminated":
                printer.line(
                    f"Terminating instance {iid}: its rollback handlers run first "
                    f"(status: {result['status']})"
                )
            else:
                printer.line(f"{past} instance {iid} (status: {result['status']})")

        _admin(url, token, as_json, action)

    if action_name == "terminate":  # (wrangler's flag, from 4.109.0)
        command = click.option(
            "--rollback",
            is_flag=True,
            help="Run the rollback handlers of the steps it started first, newest first.",
        )(command)
    command = _client_options(_scope_option(command))
    command = click.argument("instance_id", metavar="ID")(command)
    command = click.argument("name")(command)
    instances.command(action_name, help=f"{action_name.capitalize()} an instance.")(command)


for _action, _past in (
    ("pause", "Paused"),
    ("resume", "Resumed"),
    ("terminate", "Terminated"),
    ("restart", "Restarted"),
):
    _control_command(_action, _past)


@instances.command("send-event")
@click.argument("name")
@click.argument("instance_id", metavar="ID")
@click.option("--type", "event_type", required=True, help="The event type.")
@click.option("--payload", help="The event's payload, as JSON.")
@_scope_option
@_client_options
def instances_send_event(
    name: str,
    instance_id: str,
    event_type: str,
    payload: str | None,
    scope: str | None,
    url: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Send an event to an instance (what step.wait_for_event waits for)."""
    value = _json_arg(payload, "--payload")

    def action(client: Any, printer: Any) -> None:
        iid, iscope = client.resolve(name, instance_id, scope)
        client.send_event(
            name, iid, event_type, value, has_payload=payload is not None, scope=iscope
        )
        if as_json:
            printer.json({"success": True})
        else:
            printer.line(f"Sent event {event_type} to instance {iid}")

    _admin(url, token, as_json, action)


@instances.command("logs")
@click.argument("name")
@click.argument("instance_id", metavar="ID")
@click.option("--step", help="Only the lines of this step.")
@click.option("--count", type=int, help="The step's occurrence (with --step; default 1).")
@click.option("--attempt", type=int, help="Only the lines of this attempt of a step.")
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing new lines until the instance ends."
)
@click.option(
    "--interval", type=float, default=1.0, show_default=True, help="Seconds between polls."
)
@_scope_option
@_client_options
def instances_logs(
    name: str,
    instance_id: str,
    step: str | None,
    count: int | None,
    attempt: int | None,
    follow: bool,
    interval: float,
    scope: str | None,
    url: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Print what an instance's runs printed or logged (one JSON object per line with --json);
    with --follow, keep polling for new lines until it ends (or Ctrl-C)."""
    import time

    final = ("complete", "errored", "terminated")

    def action(client: Any, printer: Any) -> None:
        iid, iscope = client.resolve(name, instance_id, scope)
        cursor: str | None = None
        while True:
            page = client.logs(
                name, iid, after=cursor, step=step, count=count, attempt=attempt, scope=iscope
            )
            printer.log_lines(page)
            cursor = page.get("cursor") or cursor
            if page.get("more"):
                continue
            if not follow or page.get("status") in final:
                break
            time.sleep(interval)
        if page.get("dropped_lines") and not as_json:
            printer.line(f"({page['dropped_lines']:,} line(s) dropped over the limits)")

    try:
        _admin(url, token, as_json, action)
    except KeyboardInterrupt:
        pass


@instances.command("delete")
@click.argument("name")
@click.argument("instance_id", metavar="ID")
@_scope_option
@_client_options
def instances_delete(
    name: str, instance_id: str, scope: str | None, url: str, token: str | None, as_json: bool
) -> None:
    """Delete an instance and everything stored about it."""

    def action(client: Any, printer: Any) -> None:
        iid, iscope = client.resolve(name, instance_id, scope)
        client.delete_instance(name, iid, scope=iscope)
        if as_json:
            printer.json({"success": True})
        else:
            printer.line(f"Deleted instance {iid}")

    _admin(url, token, as_json, action)


if __name__ == "__main__":
    main()
