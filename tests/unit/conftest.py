"""Fixtures for the engine-level unit tests: every such test runs once per storage backend."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from unit_support import EnvFactory, workflow

from dynamic_workflows.testing import WorkflowTestEnv


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_env(backend: str, tmp_path: Path) -> EnvFactory:
    """``make_env(run_or_class, **kwargs)``: a WorkflowTestEnv on this test's backend."""
    counter = itertools.count()

    def factory(entrypoint: Any, **kwargs: Any) -> WorkflowTestEnv:
        if not isinstance(entrypoint, type):
            entrypoint = workflow(entrypoint)
        folder = tmp_path / f"db{next(counter)}"
        folder.mkdir()
        return WorkflowTestEnv(entrypoint, storage=backend, tmp_path=folder, **kwargs)

    return factory
