"""A call too large for a tenant's worker is refused before it is sent, naming the sizes, and the
worker lives on: receiving a message costs a worker about three times its size, so one within
the frame limit could kill a worker with a small memory limit (a 48 MiB body killed one allowed
128 MiB; a host accepted up to 100 MiB)."""

from __future__ import annotations

import pytest

from dynamic_workflows.host.convert import DEFAULT_MAX_BODY
from dynamic_workflows.sandbox.errors import TenantWorkerError
from dynamic_workflows.sandbox.framing import DEFAULT_MAX_FRAME
from dynamic_workflows.sandbox.loader import DEFAULT_LIMITS, Loader
from dynamic_workflows.sandbox.process import max_call_bytes
from dynamic_workflows.workers import Request

from .conftest import worker_code

ECHO = """
    import os
    from workers import Response, WorkerEntrypoint

    class Default(WorkerEntrypoint):
        async def fetch(self, request):
            return Response(f"{len(await request.text())} {os.getpid()}")
"""


def post(size: int) -> Request:
    return Request("http://tenant/", method="POST", body=b"x" * size)


async def test_a_body_too_large_for_the_worker_is_refused_and_the_worker_lives(
    loader: Loader,
) -> None:
    small = loader.get("small", lambda: worker_code(ECHO, limits={"memory_mb": 16}))
    ok = await small.get_entrypoint().fetch(post(1 << 20))
    size, pid = (await ok.text()).split()
    assert size == str(1 << 20)
    with pytest.raises(TenantWorkerError) as caught:
        await small.get_entrypoint().fetch(post(8 << 20))
    assert str(caught.value).startswith("tenant 'small': fetch(): the call is 8,")
    assert "more than this worker is sent: 4,194,304 bytes, a quarter of its memory" in str(
        caught.value
    )
    # Refused before sending: the same worker process answers the next request.
    again = await small.get_entrypoint().fetch(post(10))
    assert (await again.text()).split() == ["10", pid]


def test_the_hosts_default_body_fits_a_default_worker_with_room() -> None:
    assert DEFAULT_LIMITS.memory_mb is not None
    limit = max_call_bytes(DEFAULT_LIMITS.memory_mb << 20)
    assert limit == 32 << 20 < DEFAULT_MAX_FRAME
    assert limit // 2 >= DEFAULT_MAX_BODY  # headers and the message's own bytes fit beside it
