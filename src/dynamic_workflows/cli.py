"""``dwf``: the command-line tool.

``dwf run FILE`` runs one workflow class from a Python file to its end, durably (SQLite in a
``.dwf`` folder beside the file, or ``--db``): stop it at any point and run the same command
with the same ``--id`` to resume where it was.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .binding import Instance
from .engine import Engine
from .errors import DynamicWorkflowsError, InstanceAlreadyExistsError
from .modules import load_module_from_source
from .storage import open_storage
from .workers import WorkflowEntrypoint

__all__ = ["main"]

TERMINAL = ("complete", "errored", "terminated")


def _json_arg(value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from None


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
        last = None
        while True:
            status = await instance.status()
            if status["status"] != last:
                last = status["status"]
                click.echo(f"  {instance.id}: {last}", err=True)
            if last in TERMINAL:
                return status
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    main()
