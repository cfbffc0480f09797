"""``dwf doctor``: what this machine gives the sandbox and the engine, layer by layer."""

from __future__ import annotations

import platform
import sqlite3
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from .sandbox.confine import probe

__all__ = ["diagnose", "render"]


def diagnose() -> dict[str, Any]:
    """The isolation report and the runtime facts that matter, as JSON-ready data."""
    report = probe()
    try:
        import uvloop  # noqa: F401

        has_uvloop = True
    except ImportError:
        has_uvloop = False
    return {
        "sandbox": report.as_dict(),
        "summary": report.summary(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "uvloop": has_uvloop,
    }


def render(facts: dict[str, Any], console: Console | None = None) -> None:
    """Print the facts as a table; the verdict last."""
    console = console or Console()
    table = Table(title="sandbox layers")
    table.add_column("layer")
    table.add_column("available")
    table.add_column("detail")
    for name, layer in facts["sandbox"]["layers"].items():
        table.add_row(name, "yes" if layer["available"] else "[red]no", layer["detail"])
    console.print(table)
    console.print(
        f"python {facts['python']} on {facts['platform']}; SQLite {facts['sqlite']}; "
        f"uvloop {'yes' if facts['uvloop'] else 'no'}"
    )
    console.print(facts["summary"])
    limits = facts["sandbox"].get("limits")
    if limits is not None:
        console.print(f"limits in force: {limits['in_force']}")
        if not limits["cgroup2"]:
            console.print(f"no cgroup v2 limits: {limits['detail']}")
    if facts["sandbox"]["safe_for_untrusted"]:
        console.print("[green]untrusted tenant code can run here")
    else:
        console.print(
            "[red]untrusted tenant code is refused here: seccomp and (Landlock or a network "
            "namespace) are required; only --unconfined (trusted code) would start"
        )


if __name__ == "__main__":  # pragma: no cover - `dwf doctor` is the entry point
    render(diagnose())
    sys.exit(0)
