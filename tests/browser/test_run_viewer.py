"""The dashboard as a person uses it, in headless Chromium against ``dwf dev examples/saas``.

Instances are created as the example's tenants create them (``POST /?id=...`` with
``x-tenant-id``): *acme* reserves, charges (retried twice, 1 s apart), sleeps and ships;
*globex* drafts, waits for an ``approval`` event and publishes; *initech* sends invoices.
An acme order with ``"qty": null`` fails its charge step at every attempt.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from browser_support import (
    EXPLORER,
    ROOT,
    WF,
    Server,
    admin,
    copy_project,
    create,
    free_port,
    instance_url,
    wait_admin_status,
)
from playwright.sync_api import Page, expect

Shot = Callable[[str], Path]


def step(page: Page, name: str, count: int = 1) -> Any:
    return page.locator(f'li[data-testid="step"][data-name="{name}"][data-count="{count}"]')


def row(page: Page, id: str) -> Any:
    return page.locator(f'[data-testid="instance-row"][data-id="{id}"]')


def status_of(page: Page) -> Any:
    return page.get_by_test_id("instance-status")


def action(page: Page, name: str) -> Any:
    return page.locator(f'#actions button[data-action="{name}"]')


def test_a_new_instance_appears_in_the_list_with_its_tenant(
    page: Page, saas: Server, screenshot: Shot
) -> None:
    page.goto(saas.url + EXPLORER)
    page.get_by_role("link", name=WF).click()
    expect(page).to_have_url(re.compile(f"{EXPLORER}workflows/{WF}$"))
    create(saas, "initech", {"amounts": [5, 7]}, id="list-1")
    create(saas, "globex", {"title": "list"}, id="list-2")
    # The list refreshes itself: both appear without a reload, with their tenants.
    expect(row(page, "list-1")).to_be_visible()
    expect(row(page, "list-1").locator("td").nth(1)).to_have_text("initech")
    expect(row(page, "list-2").locator("td").nth(1)).to_have_text("globex")
    expect(row(page, "list-1").locator(".st")).to_have_text("complete")
    expect(row(page, "list-2").locator(".st")).to_have_text("waiting")
    # Counts per tenant, and the tenant filter (kept in the URL, so it survives a reload).
    globex = page.locator('[data-testid="tenant-row"]', has_text="globex")
    expect(globex).to_contain_text("waiting")
    screenshot("list")
    globex.locator(".tenant").click()
    expect(row(page, "list-1")).to_have_count(0)
    expect(row(page, "list-2")).to_be_visible()
    expect(page).to_have_url(re.compile(r"\?scope=m-"))
    page.reload()
    expect(row(page, "list-2")).to_be_visible()
    expect(row(page, "list-1")).to_have_count(0)
    expect(page.locator("#f-scope")).to_have_value(re.compile("^=m-"))
    # Status filter and search by id.
    page.get_by_role("link", name="clear filters").click()
    page.locator("#f-status").select_option("complete")
    expect(row(page, "list-2")).to_have_count(0)
    expect(row(page, "list-1")).to_be_visible()
    expect(page).to_have_url(re.compile(r"status=complete"))
    page.locator("#f-status").select_option("")
    page.locator("#f-id").fill("list-2")
    page.locator("#f-id").press("Enter")
    expect(page.locator('[data-testid="instance-row"]')).to_have_count(1)
    expect(row(page, "list-2")).to_be_visible()
    # Paging, newest first (?per_page= sets the page's size).
    page.goto(f"{saas.url}{EXPLORER}workflows/{WF}?per_page=1")
    expect(page.locator('[data-testid="instance-row"]')).to_have_count(1)
    expect(row(page, "list-2")).to_be_visible()
    expect(page.locator("#pager")).to_contain_text("page 1 of")
    page.get_by_role("button", name="older").click()
    expect(row(page, "list-1")).to_be_visible()
    expect(page.locator('[data-testid="instance-row"]')).to_have_count(1)
    expect(page).to_have_url(re.compile(r"per_page=1&page=2|page=2&per_page=1"))
    page.get_by_role("button", name="newer").click()
    expect(row(page, "list-2")).to_be_visible()
    expect(page.get_by_role("button", name="newer")).to_be_disabled()
    # A row's link is the instance's own page.
    row(page, "list-2").get_by_role("link").click()
    expect(page.get_by_test_id("instance-id")).to_have_text("list-2")
    expect(page).to_have_url(re.compile("/instances/list-2\\?scope=m-"))


def test_steps_complete_live_with_durations(page: Page, saas: Server, screenshot: Shot) -> None:
    create(saas, "acme", {"sku": "rocket", "qty": 1, "courier_delay": "3 seconds"}, id="live-1")
    page.goto(instance_url(saas, "live-1"))
    page.evaluate("window.__sameDocument = true")
    # The sleep shows while it lasts, then what ended it; every step gets a duration.
    courier = step(page, "wait for the courier")
    expect(courier).to_have_attribute("data-state", "sleeping")
    expect(courier).to_contain_text("sleeping until")
    expect(page.get_by_test_id("live")).to_contain_text("live")
    screenshot("sleeping")
    expect(step(page, "ship")).to_have_attribute("data-state", "done")
    expect(status_of(page)).to_have_text("complete")
    expect(courier).to_have_attribute("data-state", "done")
    expect(courier.locator('[data-ended-by="timer"]')).to_be_visible()
    for name in ("reserve", "charge", "wait for the courier", "ship"):
        expect(step(page, name).get_by_test_id("step-duration")).to_have_text(
            re.compile(r"^(<1 ms|\d+ ms|\d+\.\d+ s)$")
        )
    # The sleep lasted its 3 s.
    slept = step(page, "wait for the courier").get_by_test_id("step-duration").inner_text()
    assert slept.endswith(" s"), slept
    assert 2.9 <= float(slept.split()[0]) < 10, slept
    expect(page.get_by_test_id("live")).to_have_text("finished · updates stopped")
    expect(page.locator("#outcome")).to_contain_text("shipped 1 x rocket")
    # All of it arrived by polling: the page was never reloaded.
    assert page.evaluate("window.__sameDocument") is True
    screenshot("complete")


def test_a_failed_step_shows_its_attempts_and_error(
    page: Page, saas: Server, screenshot: Shot
) -> None:
    create(saas, "acme", {"sku": "anvil", "qty": None}, id="fail-1")
    page.goto(instance_url(saas, "fail-1"))
    charge = step(page, "charge")
    expect(status_of(page)).to_have_text("errored", timeout=20_000)
    expect(charge).to_have_attribute("data-state", "failed")
    attempts = charge.get_by_test_id("attempt")
    expect(attempts).to_have_count(3)
    for i in range(3):
        expect(attempts.nth(i)).to_contain_text("failed")
        expect(attempts.nth(i).get_by_test_id("error")).to_contain_text(
            "TypeError: unsupported operand type(s) for *: 'int' and 'NoneType'"
        )
    # The retry policy's delays, 1 s then 2 s (exponential), under the attempts they followed.
    expect(attempts.nth(0).get_by_test_id("retry-delay")).to_contain_text("1.00 s")
    expect(attempts.nth(1).get_by_test_id("retry-delay")).to_contain_text("2.00 s")
    expect(attempts.nth(2).get_by_test_id("retry-delay")).to_have_count(0)
    expect(charge).to_contain_text("3 attempts")
    expect(page.locator(".instance-error")).to_contain_text("TypeError")
    # Only what is valid for an errored instance is offered.
    for name in ("pause", "resume", "terminate"):
        expect(action(page, name)).to_be_hidden()
    for name in ("restart", "delete"):
        expect(action(page, name)).to_be_visible()
    expect(page.locator("#event-form")).to_be_hidden()
    screenshot("failed")


def test_pause_resume_and_terminate(page: Page, saas: Server, screenshot: Shot) -> None:
    create(saas, "acme", {"sku": "crate", "courier_delay": "1 hour"}, id="ctl-1")
    page.goto(instance_url(saas, "ctl-1"))
    expect(step(page, "wait for the courier")).to_have_attribute("data-state", "sleeping")
    expect(status_of(page)).to_have_text("waiting")
    expect(action(page, "resume")).to_be_hidden()
    action(page, "pause").click()
    expect(status_of(page)).to_have_text("paused")
    assert wait_admin_status(saas, "ctl-1", "paused")
    expect(action(page, "pause")).to_be_hidden()
    expect(action(page, "resume")).to_be_visible()
    screenshot("paused")
    action(page, "resume").click()
    expect(status_of(page)).to_have_text("waiting")
    expect(action(page, "pause")).to_be_visible()
    # Terminating asks first; cancelling changes nothing.
    action(page, "terminate").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Terminate ctl-1?")
    screenshot("confirm-terminate")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert admin(saas, f"/workflows/{WF}/instances/ctl-1")["status"] == "waiting"
    action(page, "terminate").click()
    dialog.get_by_role("button", name="Terminate").click()
    expect(status_of(page)).to_have_text("terminated")
    assert wait_admin_status(saas, "ctl-1", "terminated")
    for name in ("pause", "resume", "terminate"):
        expect(action(page, name)).to_be_hidden()
    expect(page.get_by_test_id("live")).to_have_text("finished · updates stopped")
    expect(step(page, "wait for the courier")).to_contain_text("did not end")
    # Restart (confirmed) runs it again from the start; delete (confirmed) removes it.
    action(page, "restart").click()
    dialog.get_by_role("button", name="Restart").click()
    expect(status_of(page)).to_have_text("waiting")
    expect(step(page, "wait for the courier")).to_have_attribute("data-state", "sleeping")
    action(page, "delete").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(re.compile(f"{EXPLORER}workflows/{WF}$"))
    expect(page.locator('[data-testid="instance-row"]').first).to_be_visible()
    expect(row(page, "ctl-1")).to_have_count(0)
    response = httpx.get(f"{saas.url}/cdn-cgi/local/explorer/api/workflows/{WF}/instances/ctl-1")
    assert response.status_code == 404


def test_send_an_event_from_the_page(page: Page, saas: Server, screenshot: Shot) -> None:
    create(saas, "globex", {"title": "Q4 plan", "body": "grow"}, id="evt-1")
    page.goto(instance_url(saas, "evt-1"))
    waiting = step(page, "wait for approval")
    expect(waiting).to_have_attribute("data-state", "waiting")
    expect(waiting).to_contain_text("waiting for event approval")
    expect(page.locator("#pending")).to_contain_text("Waiting for event approval")
    # The form offers the type the instance waits for.
    expect(page.locator("#ev-type")).to_have_value("approval")
    page.locator("#ev-payload").fill('{"by": "grace"}')
    screenshot("before-event")
    page.get_by_role("button", name="Send event").click()
    expect(status_of(page)).to_have_text("complete")
    expect(waiting.locator('[data-ended-by="event"]')).to_contain_text("approval")
    expect(step(page, "publish")).to_have_attribute("data-state", "done")
    expect(page.locator("#outcome")).to_contain_text("approved by grace")
    waiting.locator("summary", has_text="event payload").click()
    expect(waiting.locator("pre")).to_contain_text('"by": "grace"')
    screenshot("after-event")


def test_a_wait_that_timed_out(page: Page, saas: Server, screenshot: Shot) -> None:
    create(saas, "globex", {"title": "late", "timeout": "2 seconds"}, id="late-1")
    page.goto(instance_url(saas, "late-1"))
    waiting = step(page, "wait for approval")
    expect(waiting).to_contain_text("waiting for event approval · times out at")
    expect(waiting).to_have_attribute("data-state", "failed")
    expect(waiting.locator('[data-ended-by="timeout"]')).to_contain_text("ended by its timeout at")
    expect(waiting.locator('[data-ended-by="timeout"]')).to_contain_text("approval")
    expect(status_of(page)).to_have_text("errored")
    expect(page.locator(".instance-error")).to_be_visible()
    screenshot("timed-out")


def test_a_refused_action_stays_visible_until_dismissed(
    page: Page, saas: Server, screenshot: Shot
) -> None:
    create(saas, "globex", {"title": "refused"}, id="ref-1")
    page.goto(instance_url(saas, "ref-1"))
    expect(step(page, "wait for approval")).to_have_attribute("data-state", "waiting")
    page.locator("#ev-type").fill("not a valid type!")
    page.get_by_role("button", name="Send event").click()
    alert = page.get_by_test_id("action-error")
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text("Send event not a valid type! to ref-1")
    expect(alert).to_contain_text("not a valid type!")
    # The page goes on refreshing (every second); the error stays.
    updated = page.get_by_test_id("live").inner_text()
    expect(page.get_by_test_id("live")).not_to_have_text(updated)
    page.wait_for_timeout(2500)
    expect(alert).to_be_visible()
    # A payload that is not JSON is refused before it is sent, and stays as well.
    page.locator("#ev-type").fill("approval")
    page.locator("#ev-payload").fill("{by: ada")
    page.get_by_role("button", name="Send event").click()
    expect(alert).to_have_count(2)
    expect(alert.nth(1)).to_contain_text("the payload is not JSON")
    assert admin(saas, f"/workflows/{WF}/instances/ref-1")["status"] == "waiting"
    screenshot("refused")
    alert.nth(0).get_by_role("button", name="dismiss").click()
    expect(alert).to_have_count(1)
    alert.get_by_role("button", name="dismiss").click()
    expect(alert).to_have_count(0)


def test_every_page_has_a_url_that_works_on_reload(page: Page, saas: Server) -> None:
    create(saas, "acme", {"sku": "bolt", "courier_delay": "1 second"}, id="url-1")
    wait_admin_status(saas, "url-1", "complete")
    scope = admin(saas, f"/workflows/{WF}/instances/url-1")["scope"]
    # A step's URL: the instance's, with the step as fragment; opened directly, it is marked
    # and scrolled to.
    page.goto(instance_url(saas, "url-1", scope) + "#step-charge-1")
    target = step(page, "charge")
    expect(target).to_have_class(re.compile(r"\btargeted\b"))
    expect(target).to_have_id("step-charge-1")
    href = step(page, "wait for the courier").locator("a.anchor").get_attribute("href")
    assert href == "#step-wait%20for%20the%20courier-1"
    step(page, "wait for the courier").locator("a.anchor").click()
    expect(step(page, "wait for the courier")).to_have_class(re.compile(r"\btargeted\b"))
    expect(target).not_to_have_class(re.compile(r"\btargeted\b"))
    page.reload()
    expect(step(page, "wait for the courier")).to_have_class(re.compile(r"\btargeted\b"))
    # Breadcrumbs lead back to the workflow and to the list of workflows.
    page.locator("#crumbs").get_by_role("link", name=WF).click()
    expect(page).to_have_url(re.compile(f"{EXPLORER}workflows/{WF}$"))
    page.go_back()
    expect(page.get_by_test_id("instance-id")).to_have_text("url-1")
    # An instance's address without its scope finds it and then names its scope.
    page.goto(instance_url(saas, "url-1"))
    expect(page.get_by_test_id("instance-id")).to_have_text("url-1")
    expect(page).to_have_url(re.compile(r"\?scope=m-"))
    # wrangler's path (/cdn-cgi/explorer/) serves the same dashboard.
    page.goto(f"{saas.url}/cdn-cgi/explorer/workflows/{WF}")
    expect(row(page, "url-1")).to_be_visible()
    expect(row(page, "url-1").get_by_role("link")).to_have_attribute(
        "href", re.compile(f"^/cdn-cgi/explorer/workflows/{WF}/instances/url-1")
    )
    # An unknown instance says so instead of spinning.
    page.goto(instance_url(saas, "no-such-instance"))
    expect(page.get_by_test_id("timeline")).to_contain_text("not found")


def test_a_narrow_window(page: Page, saas: Server, screenshot: Shot) -> None:
    create(saas, "globex", {"title": "narrow"}, id="narrow-1")
    page.set_viewport_size({"width": 420, "height": 900})

    def overflow() -> int:
        return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))

    page.goto(instance_url(saas, "narrow-1"))
    expect(step(page, "wait for approval")).to_have_attribute("data-state", "waiting")
    assert overflow() <= 0, f"the instance page is {overflow()}px wider than the window"
    screenshot("instance")
    page.goto(f"{saas.url}{EXPLORER}workflows/{WF}")
    expect(row(page, "narrow-1")).to_be_visible()
    assert overflow() <= 0, f"the list is {overflow()}px wider than the window"
    screenshot("list")


def test_behind_dwf_serves_admin_token(page: Page, tmp_path: Path, screenshot: Shot) -> None:
    folder = copy_project(ROOT / "examples" / "saas", tmp_path / "saas")
    admin_port = free_port()
    server = Server(
        "serve",
        folder,
        "--db",
        f"sqlite:///{tmp_path / 'state.db'}",
        "--admin-port",
        str(admin_port),
        "--admin-token",
        "s3cret-token",
    )
    try:
        admin_url = f"http://127.0.0.1:{admin_port}"
        server.wait_ready(admin_url, headers={"authorization": "Bearer s3cret-token"})
        create(server, "globex", {"title": "served"}, id="srv-1")
        # The link dwf serve's admin gives: the token in the fragment, which never leaves the
        # browser; the page keeps it for the tab and takes it out of the address bar.
        page.goto(f"{admin_url}{EXPLORER}workflows/{WF}#token=s3cret-token")
        expect(row(page, "srv-1")).to_be_visible()
        expect(page).to_have_url(f"{admin_url}{EXPLORER}workflows/{WF}")
        row(page, "srv-1").get_by_role("link").click()
        expect(step(page, "wait for approval")).to_have_attribute("data-state", "waiting")
        page.reload()  # the tab still has the token
        expect(step(page, "wait for approval")).to_have_attribute("data-state", "waiting")
        screenshot("served")
    finally:
        server.stop()


def test_a_rollback_shows_its_outcome_and_the_handlers_run(
    page: Page, saas: Server, screenshot: Shot
) -> None:
    create(saas, "globex", {"title": "undo me"}, id="rb-1")
    page.goto(instance_url(saas, "rb-1"))
    expect(step(page, "wait for approval")).to_have_attribute("data-state", "waiting")
    expect(page.get_by_test_id("rollback")).to_have_count(0)
    response = httpx.patch(
        f"{saas.url}{EXPLORER}api/workflows/{WF}/instances/rb-1/status",
        json={"status": "terminate", "rollback": True},
    )
    assert response.status_code == 200, response.text
    assert wait_admin_status(saas, "rb-1", "terminated")
    expect(status_of(page)).to_have_text("terminated")
    expect(page.get_by_test_id("rollback-outcome")).to_have_text("complete")
    # The draft step's handler (globex's discard) ran once, as its own journal entry.
    expect(step(page, "draft", -1)).to_have_attribute("data-state", "done")
    # Shown as a handler's run with what it printed, not as a wait for an event (it was).
    expect(step(page, "draft", -1)).to_contain_text("discarded the draft 'undo me'")
    expect(step(page, "draft", -1)).not_to_contain_text("waiting for event")
    expect(step(page, "draft", -1)).not_to_contain_text("ended by")
    screenshot("rolled-back")
