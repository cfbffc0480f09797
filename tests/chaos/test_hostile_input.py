"""Hostile input: schemathesis against the admin API (from the OpenAPI description it serves),
hypothesis against the dispatcher routes of examples/saas. Malformed frames from a
compromised worker are in test_frames.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from .scenarios import hostile_input

pytestmark = pytest.mark.chaos


async def test_fuzzing_the_admin_api_and_the_dispatcher_finds_no_5xx(tmp_path: Path) -> None:
    figures = await hostile_input(tmp_path, admin_examples=5, dispatcher_examples=200)
    assert figures["5xx"] == 0
    assert figures["hangs"] == 0
    assert figures["hostile requests"] > 300
