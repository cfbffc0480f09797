"""The dashboard's tenants page, in headless Chromium against ``dwf dev examples/saas``: every
tenant's usage (live, running, waiting, finished, steps), its throttled creates and limits,
sorted and filtered by workflow in the URL."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from browser_support import EXPLORER, WF, Server, create, wait_admin_status
from playwright.sync_api import Page, Route, expect

Shot = Callable[[str], Path]


def usage_row(page: Page, tenant: str) -> Any:
    return page.locator(f'[data-testid="tenant-usage-row"][data-tenant="{tenant}"]')


def figure(row: Any, field: str) -> int:
    return int(row.locator(f'td[data-field="{field}"]').inner_text().replace(",", ""))


def test_the_tenants_page_shows_each_tenants_usage(
    page: Page, saas: Server, screenshot: Shot
) -> None:
    create(saas, "globex", {"title": "usage"}, id="usage-1")  # waits for an approval
    create(saas, "initech", {"amounts": [3, 4]}, id="usage-2")
    wait_admin_status(saas, "usage-1", "waiting")
    wait_admin_status(saas, "usage-2", "complete")
    page.goto(saas.url + EXPLORER)
    page.get_by_test_id("tenants-link").click()
    expect(page).to_have_url(re.compile(f"{EXPLORER}tenants$"))
    globex, initech = usage_row(page, "globex"), usage_row(page, "initech")
    expect(globex).to_be_visible()
    assert figure(globex, "waiting") >= 1
    assert figure(globex, "live") >= figure(globex, "waiting")
    assert figure(initech, "finished") >= 1
    assert figure(initech, "steps") >= 1
    # The example's plan for globex (src/entry.py) over the project's defaults (wrangler.jsonc),
    # as the engine stored them at its last create; nothing throttled.
    limits = globex.locator('td[data-field="limits"]')
    expect(limits.locator('[data-limit="max_running"]')).to_contain_text("5")
    expect(limits.locator('[data-limit="max_live"]')).to_contain_text("1000")
    expect(globex.locator('td[data-field="throttled"]')).to_have_text("0")
    expect(page.get_by_test_id("tenant-totals")).to_contain_text(re.compile(r"\d+ tenants? · "))
    screenshot("tenants")

    # Sorted by steps, most first; the order is in the URL and survives a reload.
    page.locator("#t-order").select_option("steps")
    expect(page).to_have_url(re.compile(r"\?order=steps$"))
    expect(page.locator('[data-testid="tenant-usage-row"]').first).to_be_visible()
    page.reload()
    expect(page.locator("#t-order")).to_have_value("steps")
    rows = page.locator('[data-testid="tenant-usage-row"]')
    expect(rows.first).to_be_visible()
    steps = [figure(rows.nth(i), "steps") for i in range(rows.count())]
    assert steps == sorted(steps, reverse=True)

    # One workflow: each tenant then links to its instances there.
    page.locator("#t-workflow").select_option(WF)
    expect(page).to_have_url(re.compile(f"workflow={WF}"))
    usage_row(page, "globex").locator("a", has_text="globex").click()
    expect(page).to_have_url(re.compile(f"workflows/{WF}\\?scope="))
    expect(page.locator('[data-testid="instance-row"][data-id="usage-1"]')).to_be_visible()


def test_limits_and_throttled_creates_are_shown(page: Page, saas: Server, screenshot: Shot) -> None:
    # The example sets no caps, so the admin API's answer is stood in for: a tenant with limits
    # whose caps throttled 12 creates.
    tenant = {
        "scope": "m-capped0000000",
        "tenant": "capped",
        "metadata": {"tenantId": "capped"},
        "instances": {"running": 5, "queued": 7, "complete": 30},
        "total": 42,
        "live": 12,
        "running": 5,
        "waiting": 0,
        "finished": 30,
        "steps": 1234,
        "last_created_on": "2026-01-02T03:04:05.000Z",
        "last_active_on": "2026-01-02T03:04:06.000Z",
        "created": 42,
        "steps_committed": 1234,
        "throttled": 12,
        "limits": {"max_running": 5, "creates_per_second": 20},
    }
    body = {
        "success": True,
        "errors": [],
        "messages": [],
        "result": [tenant],
        "result_info": {
            "count": 1,
            "total_count": 1,
            "page": 1,
            "per_page": 50,
            "total_pages": 1,
            "order": "live",
            "totals": {"instances": tenant["instances"], "steps": 1234},
        },
    }

    def answer(route: Route) -> None:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route(re.compile(r".*/api/tenants(\?.*)?$"), answer)
    page.goto(saas.url + EXPLORER + "tenants")
    row = usage_row(page, "capped")
    expect(row).to_be_visible()
    limits = row.locator('td[data-field="limits"]')
    expect(limits.locator('[data-limit="max_running"]')).to_have_text(
        re.compile(r"max_running\s+5")
    )
    expect(limits.locator('[data-limit="creates_per_second"]')).to_contain_text("20")
    throttled = row.locator('td[data-field="throttled"]')
    expect(throttled).to_have_text("12")
    expect(throttled).to_have_class(re.compile("throttled"))
    assert (figure(row, "live"), figure(row, "running"), figure(row, "steps")) == (12, 5, 1234)
    expect(page.get_by_test_id("tenant-totals")).to_have_text(
        "1 tenant · 42 instances · 1,234 steps"
    )
    screenshot("limits")
