"""What tenant code printed and where it failed, on the instance page (the admin API's logs route
and the ``traceback`` of errors), in headless Chromium against ``dwf dev examples/saas``, whose
acme code prints in the copy these tests serve (see conftest.PATCHES)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from browser_support import Server, create, instance_url
from playwright.sync_api import Page, expect

Shot = Callable[[str], Path]


def step(page: Page, name: str, count: int = 1) -> Any:
    return page.locator(f'li[data-testid="step"][data-name="{name}"][data-count="{count}"]')


def test_a_failed_attempt_shows_its_traceback_and_printed_lines(
    page: Page, saas: Server, screenshot: Shot
) -> None:
    create(saas, "acme", {"sku": "gear", "qty": None}, id="tb-1")
    page.goto(instance_url(saas, "tb-1"))
    expect(page.get_by_test_id("instance-status")).to_have_text("errored", timeout=20_000)
    attempts = step(page, "charge").get_by_test_id("attempt")
    expect(attempts).to_have_count(3)
    # Each attempt's own printed line, under it.
    for i in range(3):
        expect(attempts.nth(i).get_by_test_id("logs")).to_have_text(
            re.compile(r"stdout\s*charging None x gear")
        )
    # The failing line of the tenant's code, in the traceback of the step's (last) error and
    # of the instance's.
    traceback = attempts.nth(2).get_by_test_id("traceback")
    expect(traceback).to_contain_text('File "workflow.py"')
    expect(traceback).to_contain_text("in charge")
    expect(traceback).to_contain_text("TypeError: unsupported operand type(s)")
    expect(page.locator(".instance-error").get_by_test_id("traceback")).to_contain_text("in charge")
    # What run() printed between steps.
    expect(page.locator("#run-logs")).to_contain_text("order received: {'sku': 'gear'")
    screenshot("traceback-and-logs")


def test_lines_arrive_while_the_instance_runs(page: Page, saas: Server) -> None:
    create(saas, "acme", {"sku": "slow", "charge_seconds": 4}, id="slow-1")
    page.goto(instance_url(saas, "slow-1"))
    # While "charge" runs (4 s) the journal has no entry for it yet; what run() printed is
    # already there.
    expect(page.locator("#timeline li.busy")).to_contain_text("running")
    expect(step(page, "charge")).to_have_count(0)
    expect(page.locator("#run-logs")).to_contain_text("order received: {'sku': 'slow'")
    # Once the attempt ends, its line is under it.
    charge = step(page, "charge")
    expect(charge).to_have_attribute("data-state", "done")
    expect(charge.get_by_test_id("attempt").get_by_test_id("logs")).to_contain_text(
        "charging 1 x slow"
    )
    expect(step(page, "reserve").get_by_test_id("logs")).to_have_count(0)
