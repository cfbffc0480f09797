"""A process that runs many instances to completion on SQLite; the crash test kills it at random.

Every step execution appends ``instance name count attempt token`` to the log (O_APPEND, one
write, so it survives SIGKILL) and returns its token; the test then checks that each committed
step's stored token is the LAST execution logged for that step, i.e. it never ran again after
its result was committed.

Usage: python crash_child.py DB LOG N
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

from dynamic_workflows import Engine, SQLiteStorage
from dynamic_workflows.workers import WorkflowEntrypoint


def main() -> None:
    db, log_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(instance: str, ctx: dict[str, Any], outcome: str = "ok") -> str:
        token = uuid.uuid4().hex
        line = (
            f"{instance} {ctx['step']['name']} {ctx['step']['count']} {ctx['attempt']} "
            f"{token} {outcome}\n"
        )
        os.write(fd, line.encode())
        return token

    class Crashy(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            iid = event["instanceId"]

            @step.do("first")
            async def first(ctx: Any) -> str:
                return record(iid, ctx)

            tokens = [await first()]
            for _ in range(3):

                @step.do("loop")
                async def loop(ctx: Any) -> str:
                    await asyncio.sleep(0.001)
                    return record(iid, ctx)

                tokens.append(await loop())
            await step.sleep("nap", "20 milliseconds")

            @step.do("left")
            async def left(ctx: Any) -> str:
                return record(iid, ctx)

            @step.do("right")
            async def right(ctx: Any) -> str:
                return record(iid, ctx)

            tokens.extend(await asyncio.gather(left(), right()))

            @step.do(
                "flaky",
                config={"retries": {"limit": 3, "delay": "10 milliseconds", "backoff": "constant"}},
            )
            async def flaky(ctx: Any) -> str:
                if ctx["attempt"] < 2:
                    record(iid, ctx, "fail")
                    raise ValueError("first attempt fails")
                return record(iid, ctx)

            tokens.append(await flaky())
            return {"steps": len(tokens)}

    async def go() -> None:
        engine = Engine(SQLiteStorage(db), concurrency=50)
        binding = engine.register("crashy", Crashy)
        async with engine:
            ids = [f"i{i}" for i in range(n)]
            for start in range(0, n, 100):
                await binding.create_batch(
                    [{"id": i, "params": {}} for i in ids[start : start + 100]]
                )
            while True:
                counts = await engine.storage.count_instances("crashy")
                if counts.get("complete", 0) + counts.get("errored", 0) >= n:
                    break
                await asyncio.sleep(0.02)

    asyncio.run(go())
    os.close(fd)


if __name__ == "__main__":
    main()
