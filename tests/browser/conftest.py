"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, ``dwf dev`` on a copy of
``examples/saas``, and screenshots kept as artifacts.

Chromium is ``/usr/bin/chromium`` (``scripts/test`` installs Debian's ``chromium`` when it is
missing); Playwright's own browser downloads are never used. Without a browser these tests skip,
except under ``CI=true``, where they fail: CI must run them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import CHROMIUM, ROOT, Server, copy_project

PATCHES = [
    (
        '        order = event["payload"] or {}\n',
        '        order = event["payload"] or {}\n        print("order received:", order)\n',
    ),
    (
        "        async def charge(reserve):\n",
        "        async def charge(reserve):\n"
        "            print(f\"charging {reserve['qty']} x {reserve['sku']}\")\n"
        "            import asyncio\n"
        '            await asyncio.sleep(order.get("charge_seconds", 0))\n',
    ),
    ('timeout="1 hour")', 'timeout=doc.get("timeout", "1 hour"))'),
]
"""What the copy changes in the tenants' code: acme prints each order it gets and each charge
it attempts, and its charge takes ``charge_seconds`` (params) when given; globex waits for its
approval ``timeout`` long (params; 1 hour by default)."""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests: {reason} (scripts/test installs chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium for one test module. Not for the session: Playwright's sync API runs
    an event loop on this thread while it is started, and the asyncio tests that follow in the
    same session could not run theirs."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed ({exc}); pip install -e '.[dev]'")
    if not os.path.exists(CHROMIUM):
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    manager = sync_playwright()
    playwright = manager.start()
    try:
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM)
        except Exception as exc:
            _unavailable(f"{CHROMIUM} cannot be launched: {exc}")
        try:
            yield launched
        finally:
            launched.close()
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def saas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``dwf dev`` serving a copy of the bundled SaaS example (tenants in the sandbox), with
    :data:`PATCHES` applied."""
    folder = copy_project(ROOT / "examples" / "saas", tmp_path_factory.mktemp("browser") / "saas")
    tenants = folder / "src" / "tenants.py"
    source = tenants.read_text()
    for before, after in PATCHES:
        assert before in source, f"examples/saas changed: {before!r} is gone"
        source = source.replace(before, after, 1)
    tenants.write_text(source)
    server = Server("dev", folder, "--no-reload")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh page (1280x900); the page's uncaught exceptions and console errors fail the
    test, and a screenshot of a failing test is kept."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    new = context.new_page()
    problems: list[str] = []
    new.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))

    def console(message: Any) -> None:
        # A refused request is logged by the browser itself; the page shows it (or, for the
        # probe of a logs route the server lacks, expects it).
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(f"console: {message.text}")

    new.on("console", console)
    try:
        yield new
        assert not problems, problems
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            try:
                new.screenshot(path=str(_artifact(tmp_path, request.node.name, "on-failure")))
            except Exception:
                pass
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def _artifact(tmp_path: Path, test: str, name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{test}-{name}")
    folder = tmp_path / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder / f"{safe}.png"


@pytest.fixture
def screenshot(page: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Path]:
    """``screenshot(name)``: the whole page as a PNG under the test's tmp_path (and under
    ``$DWF_BROWSER_ARTIFACTS`` when set, for CI to keep)."""

    def take(name: str) -> Path:
        path = _artifact(tmp_path, request.node.name, name)
        page.screenshot(path=str(path), full_page=True)
        keep = os.environ.get("DWF_BROWSER_ARTIFACTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        return path

    return take
