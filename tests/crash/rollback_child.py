"""A process that runs one saga on SQLite until it ends: steps ``a`` and ``b`` with rollback
handlers, then ``c``, which fails; the rollback test SIGKILLs it while a handler runs.

Every handler execution appends ``handler <step> <phase>`` to the log (O_APPEND, one write, so it
survives SIGKILL). The first time ``a``'s handler runs it then waits (for the kill); once the log
shows it started before, it finishes at once.

Usage: python rollback_child.py DB LOG
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from dynamic_workflows import Engine, SQLiteStorage
from dynamic_workflows.workers import WorkflowEntrypoint

NO_RETRY = {"retries": {"limit": 0, "delay": 0}}


def main() -> None:
    db, log_path = sys.argv[1], Path(sys.argv[2])
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def log(line: str) -> None:
        os.write(fd, f"{line}\n".encode())

    def started_before() -> bool:
        return "handler a start" in log_path.read_text()

    class Saga(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("a")
            async def a() -> str:
                return "reserved"

            @a.rollback
            async def undo_a(output: Any) -> None:
                first_time = not started_before()
                log("handler a start")
                if first_time:
                    await asyncio.sleep(60)  # killed here
                log(f"handler a done {output}")

            @step.do("b")
            async def b() -> str:
                return "charged"

            @b.rollback
            async def undo_b(output: Any) -> None:
                log(f"handler b done {output}")

            @step.do("c", config=NO_RETRY)
            async def c() -> None:
                raise ValueError("shipping failed")

            await a()
            await b()
            await c()

    async def go() -> None:
        engine = Engine(SQLiteStorage(db))
        binding = engine.register("saga", Saga)
        async with engine:
            if await engine.storage.get_instance("saga", "", "s1") is None:
                await binding.create(id="s1")
            instance = await binding.get("s1")
            while True:
                if (await instance.status())["status"] in ("errored", "complete"):
                    break
                await asyncio.sleep(0.02)

    asyncio.run(go())
    os.close(fd)


if __name__ == "__main__":
    main()
