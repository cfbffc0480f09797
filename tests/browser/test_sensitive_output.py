"""The dashboard's instance page, in headless Chromium, for a step declared ``sensitive:
"output"`` (Cloudflare's step option): its output shows as ``[REDACTED]``, never the value,
while an ordinary step's output shows as before."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browser_support import API, EXPLORER, ROOT, Server, copy_project
from playwright.sync_api import Page, expect

PROJECT = ROOT / "tests" / "acceptance" / "projects" / "sensitive"
WF = "vault"
SECRET = "sk-live-0123456789"


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = copy_project(PROJECT, tmp_path_factory.mktemp("browser") / "sensitive")
    server = Server("dev", folder, "--no-reload")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def step(page: Page, name: str) -> Any:
    return page.locator(f'li[data-testid="step"][data-name="{name}"][data-count="1"]')


def test_a_sensitive_steps_output_shows_redacted(page: Page, vault: Server) -> None:
    made = httpx.post(f"{vault.url}{API}/workflows/{WF}/instances", json={"id": "b1"})
    assert made.status_code == 200, made.text
    page.goto(f"{vault.url}{EXPLORER}workflows/{WF}/instances/b1")
    expect(step(page, "go")).to_have_attribute("data-state", "waiting")
    redacted = step(page, "fetch key").get_by_test_id("redacted-output")
    expect(redacted).to_contain_text("[REDACTED]")
    expect(redacted).to_contain_text("sensitive")
    expect(step(page, "fetch key").locator('details[data-key="output"]')).to_have_count(0)
    label = step(page, "label").locator('details[data-key="output"]')
    label.locator("summary").click()
    expect(label).to_contain_text("public label")
    # The run goes on with the real value (the instance's output is run()'s, not redacted).
    sent = httpx.post(f"{vault.url}{API}/workflows/{WF}/instances/b1/events/go", json="ok")
    assert sent.status_code == 200, sent.text
    expect(page.get_by_test_id("instance-status")).to_have_text("complete")
    expect(page.locator("body")).to_contain_text("6789/ok")
    assert SECRET not in page.content()
