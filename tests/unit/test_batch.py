"""``create_batch``: handles, skipped ids, duplicates within a batch, size limits."""

from __future__ import annotations

from typing import Any

import pytest
from unit_support import EnvFactory

from dynamic_workflows import (
    BatchError,
    InstanceNotFoundError,
    InvalidInstanceIdError,
    WorkflowError,
)


async def echo(event: Any, step: Any) -> Any:
    @step.do("echo")
    async def echo_step() -> Any:
        return event["payload"]

    return await echo_step()


async def test_batch_returns_handles_in_order(make_env: EnvFactory) -> None:
    async with make_env(echo) as wf:
        handles = await wf.binding.create_batch(
            [{"id": "one", "params": 1}, {"id": "two", "params": 2}, {"params": 3}]
        )
        assert [h.id for h in handles[:2]] == ["one", "two"]
        assert handles[2].id not in ("one", "two")
        outputs = [(await wf.wait_for(h))["output"] for h in handles]
    assert outputs == [1, 2, 3]


async def test_existing_ids_are_skipped_and_left_out(make_env: EnvFactory) -> None:
    async with make_env(echo) as wf:
        existing = await wf.binding.create(id="a", params="original")
        await wf.wait_for(existing)
        handles = await wf.binding.create_batch(
            [
                {"id": "a", "params": "replacement"},
                {"id": "b", "params": "B"},
                {"id": "c", "params": "C"},
            ]
        )
        assert [h.id for h in handles] == ["b", "c"]
        assert [(await wf.wait_for(h))["output"] for h in handles] == ["B", "C"]
        assert (await (await wf.binding.get("a")).status())["output"] == "original"


async def test_batch_of_only_existing_ids_returns_nothing(make_env: EnvFactory) -> None:
    async with make_env(echo) as wf:
        await wf.binding.create(id="a")
        assert await wf.binding.create_batch([{"id": "a"}, {"id": "a"}]) == []


async def test_same_id_twice_in_a_batch_is_created_once(make_env: EnvFactory) -> None:
    async with make_env(echo) as wf:
        handles = await wf.binding.create_batch(
            [{"id": "x", "params": "first"}, {"id": "y"}, {"id": "x", "params": "second"}]
        )
        assert [h.id for h in handles] == ["x", "y"]
        assert (await wf.wait_for(handles[0]))["output"] == "first"
        assert len(await wf.storage.list_instances(None)) == 2


async def test_empty_batch_is_an_error(make_env: EnvFactory) -> None:
    async with make_env(echo) as wf:
        with pytest.raises(BatchError) as info:
            await wf.binding.create_batch([])
    assert str(info.value) == "create_batch() got an empty batch"


async def test_more_than_100_items_is_an_error(make_env: EnvFactory) -> None:
    async with make_env(echo) as wf:
        with pytest.raises(BatchError) as info:
            await wf.binding.create_batch([{"id": f"i{n}"} for n in range(101)])
        assert str(info.value) == "create_batch() got 101 instances; the limit is 100"
        assert await wf.storage.list_instances(None) == []
        with pytest.raises(InstanceNotFoundError):
            await wf.binding.get("i0")


async def test_100_items_is_fine(make_env: EnvFactory) -> None:
    async with make_env(echo) as wf:
        handles = await wf.binding.create_batch([{"id": f"i{n}", "params": n} for n in range(100)])
        assert len(handles) == 100
        for n in (0, 57, 99):
            assert (await wf.wait_for(handles[n]))["output"] == n


async def test_an_invalid_id_refuses_the_whole_batch(make_env: EnvFactory) -> None:
    async with make_env(echo) as wf:
        with pytest.raises(InvalidInstanceIdError):
            await wf.binding.create_batch([{"id": "fine"}, {"id": "not fine"}])
        assert await wf.storage.list_instances(None) == []


async def test_batch_items_without_params_get_none(make_env: EnvFactory) -> None:
    async with make_env(echo) as wf:
        handles = await wf.binding.createBatch([{"id": "p"}, {}])
        assert len(handles) == 2
        for handle in handles:
            assert await wf.wait_for(handle) == {
                "status": "complete",
                "output": None,
                "error": None,
            }


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ("not a list", BatchError, "create_batch() takes a list of {'id', 'params'} dicts"),
        (None, BatchError, "create_batch() takes a list of {'id', 'params'} dicts"),
        ([1], WorkflowError, "create() options must be a dict with 'id' and/or 'params', got int"),
        ([{"id": "x", "bogus": 1}], WorkflowError, "create() got unknown option(s) ['bogus']"),
    ],
)
async def test_malformed_batches_are_refused(
    make_env: EnvFactory, bad: Any, error: type[Exception], message: str
) -> None:
    async with make_env(echo) as wf:
        with pytest.raises(error) as info:
            await wf.binding.create_batch(bad)
        assert str(info.value) == message
        assert await wf.storage.list_instances(None) == []


# -- the object form (Cloudflare, October 2026) -------------------------------------------------


async def test_object_form_by_count_creates_n_with_generated_ids(make_env: EnvFactory) -> None:
    async with make_env(echo) as wf:
        result = await wf.binding.create_batch({"count": 3, "params": {"report": "daily"}})
        assert isinstance(result, dict)
        assert result["errors"] == []
        ids = [h.id for h in result["created"]]
        assert len(set(ids)) == 3
        outputs = [(await wf.wait_for(h))["output"] for h in result["created"]]
    assert outputs == [{"report": "daily"}] * 3


async def test_object_form_reports_existing_and_repeated_ids_by_position(
    make_env: EnvFactory,
) -> None:
    async with make_env(echo) as wf:
        await wf.binding.create(id="order-1", params="original")
        result = await wf.binding.createBatch(
            {
                "instances": [
                    {"id": "order-1", "params": 1},
                    {"id": "order-2", "params": 2},
                    {"params": 3},
                    {"id": "order-2", "params": 4},
                ]
            }
        )
        assert isinstance(result, dict)
        assert result["created"][0].id == "order-2"
        assert len(result["created"]) == 2
        assert result["errors"] == [
            {
                "index": 0,
                "id": "order-1",
                "code": "instance.already_exists",
                "message": '(instance.already_exists) Workflow instance with id "order-1" '
                "already exists",
            },
            {
                "index": 3,
                "id": "order-2",
                "code": "instance.already_exists",
                "message": '(instance.already_exists) Workflow instance id "order-2" appears '
                "earlier in this batch (index 1)",
            },
        ]
        outputs = [(await wf.wait_for(h))["output"] for h in result["created"]]
        assert outputs == [2, 3]
        assert (await (await wf.binding.get("order-1")).status())["output"] == "original"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({}, "create_batch() options need either 'count' or 'instances'"),
        (
            {"count": 1, "instances": []},
            "create_batch() options need either 'count' or 'instances'",
        ),
        ({"count": 0}, "create_batch(): count must be an integer from 1 to 100"),
        ({"count": 101}, "create_batch(): count must be an integer from 1 to 100"),
        ({"count": True}, "create_batch(): count must be an integer from 1 to 100"),
        ({"instances": []}, "create_batch() got an empty batch"),
        ({"instances": [{}] * 101}, "create_batch() got 101 instances; the limit is 100"),
        ({"instances": "x"}, "create_batch(): instances must be a list of {'id', 'params'}"),
        (
            {"instances": [{}], "params": 1},
            "create_batch(): params goes in each entry of instances",
        ),
        ({"size": 3}, "create_batch() got unknown option(s) ['size']"),
    ],
)
async def test_malformed_object_batches_are_refused(
    make_env: EnvFactory, bad: Any, message: str
) -> None:
    async with make_env(echo) as wf:
        with pytest.raises(BatchError) as info:
            await wf.binding.create_batch(bad)
        assert str(info.value) == message
        assert await wf.storage.list_instances(None) == []


# -- delete_batch (Cloudflare's deleteBatch, September 2026) ------------------------------------


async def test_delete_batch_reports_each_position(make_env: EnvFactory) -> None:
    async with make_env(echo) as wf:
        for iid in ("a", "b"):
            await wf.wait_for(await wf.binding.create(id=iid))
        result = await wf.binding.delete_batch(["a", "missing", "b", "a"])
        assert result == {
            "deleted": [{"id": "a"}, {"id": "b"}, {"id": "a"}],
            "errors": [
                {
                    "id": "missing",
                    "code": 10400,
                    "message": "workflows.api.error.instance.not_found",
                }
            ],
        }
        for iid in ("a", "b"):
            with pytest.raises(InstanceNotFoundError):
                await wf.binding.get(iid)
        assert await wf.binding.deleteBatch({"instances": ["a"]}) == {
            "deleted": [],
            "errors": [
                {"id": "a", "code": 10400, "message": "workflows.api.error.instance.not_found"}
            ],
        }


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ([], BatchError, "delete_batch() got an empty batch"),
        (["x"] * 101, BatchError, "delete_batch() got 101 instances; the limit is 100"),
        ("abc", BatchError, "delete_batch() takes a list of instance ids"),
        ({"ids": ["a"]}, BatchError, "delete_batch() options must be {'instances': [ids]}"),
        (["ok", "-bad"], InvalidInstanceIdError, "Workflow instance has invalid id"),
    ],
)
async def test_malformed_delete_batches_are_refused(
    make_env: EnvFactory, bad: Any, error: type[Exception], message: str
) -> None:
    async with make_env(echo) as wf:
        await wf.binding.create(id="ok")
        with pytest.raises(error) as info:
            await wf.binding.delete_batch(bad)
        assert str(info.value) == message
        assert (await wf.binding.get("ok")).id == "ok"
