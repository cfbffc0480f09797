"""Instance lifecycle: statuses, pause/resume, terminate, restart, delete, get, ids, params."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from unit_support import START, EnvFactory, through_hibernations, until

from dynamic_workflows import (
    CannotTerminateError,
    Instance,
    InstanceAlreadyExistsError,
    InstanceNotFoundError,
    InvalidInstanceIdError,
    StorageError,
    WorkflowError,
)
from dynamic_workflows.workers.workflows import NonRetryableError

CANNOT_TERMINATE = (
    "(instance.cannot_terminate) Cannot terminate instance since its on a finite state"
)


class Gate:
    """Lets a test hold a step mid-execution: the step sets ``started`` and waits for ``open``."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.opened = asyncio.Event()

    async def hold(self) -> None:
        self.started.set()
        await self.opened.wait()

    def open(self) -> None:
        self.opened.set()


def three_steps(calls: Counter[str], gate: Gate | None = None) -> Any:
    """``s1`` -> ``s2`` (held by ``gate`` if given) -> ``s3``, counting executions."""

    async def run(event: Any, step: Any) -> Any:
        @step.do("s1")
        async def s1() -> str:
            calls["s1"] += 1
            return "1"

        @step.do("s2")
        async def s2(s1: str) -> str:
            calls["s2"] += 1
            if gate is not None:
                await gate.hold()
            return s1 + "2"

        @step.do("s3")
        async def s3(s2: str) -> str:
            calls["s3"] += 1
            return s2 + "3"

        return await s3()

    return run


def sleeper(calls: Counter[str], duration: str = "1 hour") -> Any:
    async def run(event: Any, step: Any) -> Any:
        @step.do("before")
        async def before() -> str:
            calls["before"] += 1
            return "b"

        @step.do("after")
        async def after() -> str:
            calls["after"] += 1
            return "a"

        first = await before()
        await step.sleep("nap", duration)
        return first + await after()

    return run


# -- statuses --------------------------------------------------------------------------------


async def test_queued_running_waiting_complete(make_env: EnvFactory) -> None:
    gate = Gate()

    async def run(event: Any, step: Any) -> Any:
        @step.do("work")
        async def work() -> Any:
            if event["payload"] == "first":
                await gate.hold()
            return event["payload"]

        value = await work()
        await step.sleep("nap", "1 hour")
        return value

    async with make_env(run, concurrency=1) as wf:
        async with wf.clock.frozen():
            first = await wf.binding.create(params="first")
            await gate.started.wait()
            assert await first.status() == {"status": "running", "output": None, "error": None}
            second = await wf.binding.create(params="second")  # the only slot is taken
            await asyncio.sleep(0.02)
            assert await second.status() == {"status": "queued", "output": None, "error": None}
            gate.open()
            assert (await wf.wait_for(first, "waiting"))["status"] == "waiting"
            assert (await wf.wait_for(second, "waiting"))["status"] == "waiting"
        assert await wf.wait_for(first) == {"status": "complete", "output": "first", "error": None}
        assert await wf.wait_for(second) == {
            "status": "complete",
            "output": "second",
            "error": None,
        }


async def test_status_shape_for_errored_instance(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        raise NonRetryableError("straight from run")

    async with make_env(run) as wf:
        status = await wf.wait_for(await wf.binding.create())
    assert status == {
        "status": "errored",
        "output": None,
        "error": {"name": "NonRetryableError", "message": "straight from run"},
    }


async def test_event_passed_to_run(make_env: EnvFactory) -> None:
    events: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        events.append(event)
        await step.sleep("nap", "1 minute")
        return event["instanceId"]

    async with make_env(run) as wf:
        instance = await wf.binding.create(id="evt-1", params={"k": [1, 2]})
        status = await through_hibernations(wf, instance, 1)
    assert status["output"] == "evt-1"
    assert len(events) == 2  # first run and the replay after the sleep see the same event
    for event in events:
        assert event == {
            "payload": {"k": [1, 2]},
            "timestamp": dt.datetime.fromtimestamp(START, dt.UTC),
            "instanceId": "evt-1",
            "workflowName": "workflow",  # WorkflowTestEnv's default name
        }
        assert event["timestamp"].utcoffset() == dt.timedelta(0)


# -- pause / resume --------------------------------------------------------------------------


async def test_pause_while_a_step_runs_then_resume_replays(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    gate = Gate()
    async with make_env(three_steps(calls, gate)) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await gate.started.wait()
        await instance.pause()
        assert await instance.status() == {
            "status": "waitingForPause",
            "output": None,
            "error": None,
        }
        gate.open()  # the running step finishes; the next one must not start
        await wf.wait_for(instance, "paused")
        await asyncio.sleep(0.02)
        assert (await instance.status())["status"] == "paused"
        assert calls == {"s1": 1, "s2": 1}
        await instance.resume()
        status = await wf.wait_for(instance)
    assert status == {"status": "complete", "output": "123", "error": None}
    assert calls == {"s1": 1, "s2": 1, "s3": 1}  # s1 and s2 replayed from storage


async def test_resume_before_the_step_ends_just_goes_on(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    gate = Gate()
    async with make_env(three_steps(calls, gate)) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await gate.started.wait()
        await instance.pause()
        assert (await instance.status())["status"] == "waitingForPause"
        await instance.resume()
        assert (await instance.status())["status"] == "running"
        gate.open()
        status = await wf.wait_for(instance)
    assert status["output"] == "123"
    assert calls == {"s1": 1, "s2": 1, "s3": 1}
    assert wf.engine.counters.runs == 1  # it never hibernated


async def test_pause_a_sleeping_instance(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    async with make_env(sleeper(calls)) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await instance.pause()
        assert await instance.status() == {"status": "paused", "output": None, "error": None}
        wf.clock.advance(2 * 3600)  # the sleep is over, but the instance is paused
        await asyncio.sleep(0.02)
        assert (await instance.status())["status"] == "paused"
        assert calls == {"before": 1}
        await instance.resume()
        status = await wf.wait_for(instance)
    assert status["output"] == "ba"
    assert calls == {"before": 1, "after": 1}


async def test_paused_instance_resumed_before_its_sleep_ends_waits_it_out(
    make_env: EnvFactory,
) -> None:
    calls: Counter[str] = Counter()
    woke: list[float] = []
    ref: list[Any] = []
    inner = sleeper(calls)

    async def run(event: Any, step: Any) -> Any:
        out = await inner(event, step)
        woke.append(ref[0].clock.now() - START)
        return out

    async with make_env(run) as wf:
        ref.append(wf)
        async with wf.clock.frozen():
            instance = await wf.binding.create()
            await wf.wait_for(instance, "waiting")
            await instance.pause()
            wf.clock.advance(600)
            await instance.resume()
        status = await wf.wait_for(instance)
    assert status["output"] == "ba"
    assert woke == [3600]


async def test_pause_a_queued_instance(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    gate = Gate()
    blocker_calls: Counter[str] = Counter()
    blocking = three_steps(blocker_calls, gate)
    plain = three_steps(calls)

    async def run(event: Any, step: Any) -> Any:
        return await (blocking if event["payload"] == "block" else plain)(event, step)

    async with make_env(run, concurrency=1) as wf, wf.clock.frozen():
        blocker = await wf.binding.create(params="block")
        await gate.started.wait()
        queued = await wf.binding.create()
        assert (await queued.status())["status"] == "queued"
        await queued.pause()
        assert (await queued.status())["status"] == "paused"
        gate.open()
        await wf.wait_for(blocker)
        await asyncio.sleep(0.02)
        assert (await queued.status())["status"] == "paused"
        assert calls == {}
        await queued.resume()
        status = await wf.wait_for(queued)
    assert status["output"] == "123"


@pytest.mark.parametrize("final", ["complete", "errored", "terminated"])
async def test_pause_and_resume_of_a_finished_instance_are_no_ops(
    make_env: EnvFactory, final: str
) -> None:
    async def run(event: Any, step: Any) -> Any:
        if event["payload"] == "errored":
            raise ValueError("failed on purpose")
        await step.sleep("nap", "1 hour")
        return "done"

    async with make_env(run) as wf:
        async with wf.clock.frozen():
            instance = await wf.binding.create(params=final)
            if final == "terminated":
                await wf.wait_for(instance, "waiting")
                await instance.terminate()
        before = await wf.wait_for(instance, final)
        await instance.pause()
        assert await instance.status() == before
        await instance.resume()
        await asyncio.sleep(0.02)
        assert await instance.status() == before


# -- terminate -------------------------------------------------------------------------------


async def test_terminate_a_sleeping_instance(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    async with make_env(sleeper(calls)) as wf:
        async with wf.clock.frozen():
            instance = await wf.binding.create()
            await wf.wait_for(instance, "waiting")
            await instance.terminate()
            assert await instance.status() == {
                "status": "terminated",
                "output": None,
                "error": None,
            }
            wf.clock.advance(2 * 3600)
            await asyncio.sleep(0.02)
        assert (await instance.status())["status"] == "terminated"
    assert calls == {"before": 1}


async def test_terminate_while_a_step_runs(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    gate = Gate()
    async with make_env(three_steps(calls, gate)) as wf:
        async with wf.clock.frozen():
            instance = await wf.binding.create()
            await gate.started.wait()
            await instance.terminate()
            assert (await instance.status())["status"] == "terminated"
            gate.open()
            await asyncio.sleep(0.02)
        assert await instance.status() == {"status": "terminated", "output": None, "error": None}
    assert calls["s3"] == 0


async def test_terminate_a_paused_instance(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    async with make_env(sleeper(calls)) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await wf.wait_for(instance, "waiting")
        await instance.pause()
        await instance.terminate()
        assert (await instance.status())["status"] == "terminated"
        await instance.resume()  # a no-op now
        await asyncio.sleep(0.02)
        assert (await instance.status())["status"] == "terminated"
    assert calls == {"before": 1}


@pytest.mark.parametrize("final", ["complete", "errored", "terminated"])
async def test_terminate_a_finished_instance_fails(make_env: EnvFactory, final: str) -> None:
    async def run(event: Any, step: Any) -> Any:
        if event["payload"] == "errored":
            raise ValueError("failed on purpose")
        await step.sleep("nap", "1 hour")
        return "done"

    async with make_env(run) as wf:
        async with wf.clock.frozen():
            instance = await wf.binding.create(params=final)
            if final == "terminated":
                await wf.wait_for(instance, "waiting")
                await instance.terminate()
        before = await wf.wait_for(instance, final)
        with pytest.raises(CannotTerminateError) as info:
            await instance.terminate()
        assert str(info.value) == CANNOT_TERMINATE
        assert info.value.code == "instance.cannot_terminate"
        assert await instance.status() == before


# -- restart ---------------------------------------------------------------------------------


async def test_restart_a_complete_instance_runs_every_step_again(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    async with make_env(three_steps(calls)) as wf:
        instance = await wf.binding.create()
        assert (await wf.wait_for(instance))["output"] == "123"
        assert calls == {"s1": 1, "s2": 1, "s3": 1}
        await instance.restart()
        assert (await instance.status())["status"] in ("queued", "running", "complete")
        status = await wf.wait_for(instance)
    assert status == {"status": "complete", "output": "123", "error": None}
    assert calls == {"s1": 2, "s2": 2, "s3": 2}


async def test_restart_a_sleeping_instance_starts_from_scratch(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    async with make_env(sleeper(calls)) as wf:
        async with wf.clock.frozen():
            instance = await wf.binding.create()
            await wf.wait_for(instance, "waiting")
            assert calls == {"before": 1}
            await instance.restart()
            await until(lambda: calls["before"] == 2)
            await wf.wait_for(instance, "waiting")
        status = await wf.wait_for(instance)
    assert status["output"] == "ba"
    assert calls == {"before": 2, "after": 1}


async def test_restart_while_a_step_runs(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    gate = Gate()
    async with make_env(three_steps(calls, gate)) as wf, wf.clock.frozen():
        instance = await wf.binding.create()
        await gate.started.wait()
        gate.started.clear()
        await instance.restart()
        await gate.started.wait()  # s2 started again, in the new run
        assert calls == {"s1": 2, "s2": 2}
        gate.open()
        status = await wf.wait_for(instance)
    assert status["output"] == "123"
    assert calls == {"s1": 2, "s2": 2, "s3": 1}


async def test_restart_an_errored_instance(make_env: EnvFactory) -> None:
    attempts: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("flaky", config={"retries": {"limit": 0}})
        async def flaky() -> str:
            attempts.append("try")
            if len(attempts) == 1:
                raise ValueError("first time unlucky")
            return "fine"

        return await flaky()

    async with make_env(run) as wf:
        instance = await wf.binding.create()
        status = await wf.wait_for(instance)
        assert status["error"] == {"name": "ValueError", "message": "first time unlucky"}
        await instance.restart()
        status = await wf.wait_for(instance, "complete")
    assert status == {"status": "complete", "output": "fine", "error": None}
    assert attempts == ["try", "try"]


# -- delete / get ----------------------------------------------------------------------------


async def test_delete_then_get_is_not_found(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    async with make_env(sleeper(calls)) as wf:
        async with wf.clock.frozen():
            instance = await wf.binding.create(id="doomed")
            await wf.wait_for(instance, "waiting")
            await instance.delete()
            with pytest.raises(InstanceNotFoundError):
                await wf.binding.get("doomed")
            with pytest.raises(InstanceNotFoundError):
                await instance.status()
            wf.clock.advance(2 * 3600)
            await asyncio.sleep(0.02)
        assert calls == {"before": 1}  # a deleted instance never runs again
        again = await wf.binding.create(id="doomed")  # the id is free again
        assert (await wf.wait_for(again))["output"] == "ba"


async def test_delete_a_finished_instance(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    async with make_env(three_steps(calls)) as wf:
        instance = await wf.binding.create(id="gone")
        await wf.wait_for(instance)
        await instance.delete()
        with pytest.raises(InstanceNotFoundError):
            await wf.binding.get("gone")
        with pytest.raises(InstanceNotFoundError):
            await instance.delete()


async def test_get_unknown_id(make_env: EnvFactory) -> None:
    async with make_env(three_steps(Counter())) as wf:
        with pytest.raises(InstanceNotFoundError) as info:
            await wf.binding.get("no-such-instance")
    assert "instance.not_found" in str(info.value)
    assert info.value.code == "instance.not_found"


async def test_get_returns_a_working_handle(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    async with make_env(three_steps(calls)) as wf:
        created = await wf.binding.create(id="findable")
        await wf.wait_for(created)
        found = await wf.binding.get("findable")
        assert found.id == "findable"
        assert await found.status() == {"status": "complete", "output": "123", "error": None}


# -- ids and params --------------------------------------------------------------------------


async def test_duplicate_id_is_refused(make_env: EnvFactory) -> None:
    calls: Counter[str] = Counter()
    async with make_env(three_steps(calls)) as wf:
        first = await wf.binding.create(id="X", params=1)
        await wf.wait_for(first)
        with pytest.raises(InstanceAlreadyExistsError) as info:
            await wf.binding.create(id="X", params=2)
        assert str(info.value) == (
            '(instance.already_exists) Workflow instance with id "X" already exists'
        )
        assert info.value.code == "instance.already_exists"
        assert calls == {"s1": 1, "s2": 1, "s3": 1}


@pytest.mark.parametrize(
    "bad_id",
    ["a" * 101, "", "-leading-dash", "has space", "slash/id", "dot.id", "ümlaut", "tab\tid", 42],
)
async def test_invalid_ids_are_refused(make_env: EnvFactory, bad_id: Any) -> None:
    async with make_env(three_steps(Counter())) as wf:
        with pytest.raises(InvalidInstanceIdError) as info:
            await wf.binding.create(id=bad_id)
        assert str(info.value) == "Workflow instance has invalid id"
        with pytest.raises(InvalidInstanceIdError):
            await wf.binding.create({"id": bad_id})
        assert await wf.storage.list_instances(None) == []


@pytest.mark.parametrize("good_id", ["a" * 100, "_underscore", "9-lives", "A-b_C-", "x"])
async def test_valid_ids_are_accepted(make_env: EnvFactory, good_id: str) -> None:
    async with make_env(three_steps(Counter())) as wf:
        instance = await wf.binding.create(id=good_id)
        assert instance.id == good_id
        assert (await wf.wait_for(instance))["status"] == "complete"


async def test_generated_ids_are_unique_uuids(make_env: EnvFactory) -> None:
    async with make_env(three_steps(Counter())) as wf:
        ids = [(await wf.binding.create()).id for _ in range(5)]
    assert len(set(ids)) == 5
    for value in ids:
        assert str(uuid.UUID(value)) == value


async def test_create_with_a_dict(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        return [event["instanceId"], event["payload"]]

    async with make_env(run) as wf:
        instance = await wf.binding.create({"id": "from-dict", "params": {"x": 1}})
        assert instance.id == "from-dict"
        status = await wf.wait_for(instance)
    assert status["output"] == ["from-dict", {"x": 1}]


async def test_create_with_unknown_option_is_refused(make_env: EnvFactory) -> None:
    async with make_env(three_steps(Counter())) as wf:
        with pytest.raises(WorkflowError) as info:
            await wf.binding.create({"id": "x", "parms": 1})
    assert str(info.value) == "create() got unknown option(s) ['parms']"


async def test_absent_params_round_trip_as_none(make_env: EnvFactory) -> None:
    payloads: list[tuple[str, Any, bool]] = []

    async def run(event: Any, step: Any) -> Any:
        payloads.append((event["instanceId"], event["payload"], "payload" in event))
        await step.sleep("nap", "1 minute")  # the replay must see None too
        return event["payload"]

    async with make_env(run) as wf:
        creations: list[Callable[[], Awaitable[Instance]]] = [
            lambda: wf.binding.create(),
            lambda: wf.binding.create(id="only-id"),
            lambda: wf.binding.create({"id": "dict-no-params"}),
            lambda: wf.binding.create(id="explicit-none", params=None),
        ]
        for create in creations:
            assert await through_hibernations(wf, await create(), 1) == {
                "status": "complete",
                "output": None,
                "error": None,
            }
    assert len(payloads) == 8
    assert all(payload is None and present for _, payload, present in payloads)


async def test_falsy_params_are_kept(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        return event["payload"]

    async with make_env(run) as wf:
        outputs = []
        for params in (0, "", [], {}, False):
            outputs.append((await wf.wait_for(await wf.binding.create(params=params)))["output"])
    assert outputs == [0, "", [], {}, False]


async def test_pause_during_a_retry_back_off(make_env: EnvFactory) -> None:
    attempts: list[tuple[int, float]] = []
    ref: list[Any] = []

    async def run(event: Any, step: Any) -> Any:
        config = {"retries": {"limit": 3, "delay": "1 minute", "backoff": "constant"}}

        @step.do("flaky", config=config)
        async def flaky(ctx: Any) -> str:
            attempts.append((ctx["attempt"], ref[0].clock.now() - START))
            if ctx["attempt"] == 1:
                raise ValueError("first attempt fails")
            return "second attempt works"

        return await flaky()

    async with make_env(run) as wf:
        ref.append(wf)
        async with wf.clock.frozen():
            instance = await wf.binding.create()
            await wf.wait_for(instance, "waiting")  # hibernating until the back-off ends
            await instance.pause()
            assert (await instance.status())["status"] == "paused"
            wf.clock.advance(600)
            await asyncio.sleep(0.02)
            assert attempts == [(1, 0)]
            await instance.resume()
            status = await wf.wait_for(instance)
    assert status["output"] == "second attempt works"
    assert attempts == [(1, 0), (2, 600)]


async def test_restart_from_a_step_reruns_it_and_the_later_ones_only(make_env: EnvFactory) -> None:
    ran: list[str] = []

    async def run(event: Any, step: Any) -> Any:
        @step.do("first")
        async def first() -> str:
            ran.append("first")
            return "1"

        one = await first()
        await step.sleep("pause", "1 minute")  # later steps are recorded at a later instant

        @step.do("second")
        async def second() -> str:
            ran.append("second")
            return "2"

        @step.do("third")
        async def third(second: str) -> str:
            ran.append("third")
            return second + "3"

        return one + await third()

    async with make_env(run) as wf:
        instance = await wf.binding.create(id="from-step")
        assert (await wf.wait_for(instance))["output"] == "123"
        assert ran == ["first", "second", "third"]
        ran.clear()
        await instance.restart({"from": {"name": "second", "type": "do"}})
        assert (await wf.wait_for(instance))["output"] == "123"
        assert ran == ["second", "third"]  # "first" kept its result


async def test_restart_and_terminate_options_are_checked(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        @step.do("only")
        async def only() -> int:
            return 1

        return await only()

    async with make_env(run) as wf:
        instance = await wf.binding.create(id="opts")
        await wf.wait_for(instance)
        cases: list[tuple[Any, str]] = [
            ({"from": {"name": "missing"}}, "(instance.step_not_found) cannot restart from step"),
            ({"from": {"name": "only", "count": 0}}, "from.count must be an integer >= 1"),
            ({"from": {"name": "only", "type": "loop"}}, "from.type must be one of do, sleep"),
            ({"from": {"nam": "only"}}, "from must be {'name', 'count'?, 'type'?}"),
            ({"until": 1}, "restart(): options must be {'from': {...}}"),
        ]
        for options, message in cases:
            with pytest.raises(WorkflowError) as info:
                await instance.restart(options)
            assert message in str(info.value)
        with pytest.raises(WorkflowError, match="rollback must be true or false"):
            await instance.terminate({"rollback": 1})
        with pytest.raises(WorkflowError, match="Cannot terminate instance since its on a finite"):
            await instance.terminate({"rollback": True})


# -- a full disk ---------------------------------------------------------------------------------


class FullDisk:
    """Makes a storage's final writes of a run (finish, suspend, release) raise StorageError, as
    a full disk does, the first ``times`` calls of each; then they succeed (space freed)."""

    def __init__(self, storage: Any, times: int) -> None:
        self.failed: Counter[str] = Counter()
        for name in ("finish_run", "suspend_run", "release_run"):
            setattr(storage, name, self._failing(name, getattr(storage, name), times))

    def _failing(self, name: str, write: Any, times: int) -> Any:
        async def attempt(*args: Any, **kwargs: Any) -> Any:
            if self.failed[name] < times:
                self.failed[name] += 1
                raise StorageError("SQLite: database or disk is full")
            return await write(*args, **kwargs)

        return attempt


async def test_a_run_whose_final_write_failed_reaches_its_end_once_writes_work(
    make_env: EnvFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The failed write was given up (released at best, and that failed too): the instance
    # stayed "running" until the engine was restarted and recovered it.
    caplog.set_level(logging.INFO, logger="dynamic_workflows.engine")
    calls: Counter[str] = Counter()

    async def run(event: Any, step: Any) -> Any:
        @step.do("work")
        async def work() -> Any:
            calls[event["payload"]] += 1
            return event["payload"]

        value = await work()
        if value == "fails":
            raise NonRetryableError("as it should")
        if value == "sleeps":
            await step.sleep("nap", "1 minute")
        return value

    async with make_env(run) as wf:
        disk = FullDisk(wf.storage, times=3)
        done = await wf.wait_for(await wf.binding.create(params="done"))
        assert done == {"status": "complete", "output": "done", "error": None}
        assert disk.failed["finish_run"] == 3
        failed = await wf.wait_for(await wf.binding.create(params="fails"))
        assert failed["error"] == {"name": "NonRetryableError", "message": "as it should"}
        disk.failed.clear()
        slept = await wf.wait_for(await wf.binding.create(params="sleeps"))
        assert slept == {"status": "complete", "output": "sleeps", "error": None}
        assert disk.failed == {"finish_run": 3, "suspend_run": 3}
    assert calls == {"done": 1, "fails": 1, "sleeps": 1}  # kept outcomes, nothing run again
    assert "cannot record its run's end (SQLite: database or disk is full)" in caplog.text
    assert "its run's end is recorded after 3 failed write(s)" in caplog.text


async def test_stopping_does_not_wait_for_a_full_disk(make_env: EnvFactory) -> None:
    async def run(event: Any, step: Any) -> Any:
        return "done"

    wf = make_env(run)
    async with wf:
        disk = FullDisk(wf.storage, times=10**9)  # it never frees up
        instance = await wf.binding.create()
        await until(lambda: disk.failed["finish_run"] >= 3)
        assert (await instance.status())["status"] == "running"
    # Out of the block: the engine stopped, giving the write up (the next start replays it).
