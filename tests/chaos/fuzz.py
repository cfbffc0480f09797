"""Hostile input over HTTP: schemathesis against the admin API (from the OpenAPI description
the API serves itself) and hypothesis against the dispatcher routes of examples/saas. Nothing
may answer 5xx or hang. Blocking code (schemathesis calls with ``requests``): run it in a
thread."""

from __future__ import annotations

import contextlib
import json
import string
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

TIMEOUT = 10.0
"""Seconds without an answer that count as a hang."""


@dataclass
class Tally:
    """Requests sent, and the ones that failed the rule (a 5xx, or no answer in time)."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    hangs: int = 0
    slowest: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, what: str, status: int | None, took: float, body: str = "") -> None:
        with self.lock:
            self.requests += 1
            self.slowest = max(self.slowest, took)
            if status is None:
                self.hangs += 1
                self.failures.append(f"no answer in {TIMEOUT} s: {what}")
                return
            self.statuses[status] += 1
            if status >= 500:
                self.failures.append(f"{status} {what}: {body[:300]}")


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: every failure is tallied
        suppress_health_check=list(HealthCheck),
    )


def fuzz_admin_api(base: str, examples: int, tally: Tally, *, seed: int = 1) -> int:
    """schemathesis on every operation of the admin API at ``base`` (its URL prefix, e.g.
    ``http://127.0.0.1:8787/cdn-cgi/local/explorer/api``), positive and negative cases, with
    the workflow's name left free and pinned to the project's; returns the operations."""
    spec = httpx.get(f"{base}/openapi.json", timeout=TIMEOUT).json()
    workflows = httpx.get(f"{base}/workflows", timeout=TIMEOUT).json()["result"]
    names = [w["name"] for w in workflows]
    existing = [
        (name, i["id"])
        for name in names
        for i in httpx.get(f"{base}/workflows/{name}/instances", timeout=TIMEOUT).json()["result"]
    ][:3]
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        # Free path parameters mostly find nothing (404): pin them to what exists, too.
        pins: list[dict[str, Any] | None] = [None]
        if "{workflow_name}" in operation.path:
            pins += [{"workflow_name": name} for name in names]
        if "{instance_id}" in operation.path:
            pins += [{"workflow_name": w, "instance_id": i} for w, i in existing]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for pin in pins:
                try:
                    strategy = operation.as_strategy(generation_mode=mode, path_parameters=pin)
                except Exception:  # no negative case exists for this operation
                    continue

                @hypothesis_seed(seed)
                @_settings(examples)
                @given(case=strategy)
                def send(case: Any) -> None:
                    started = time.monotonic()
                    what = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.200}"
                    try:
                        resp = case.call(base_url=base, timeout=TIMEOUT)
                    except Exception as exc:
                        if "timed out" in str(exc).lower() or "timeout" in type(exc).__name__:
                            tally.note(what, None, time.monotonic() - started)
                            return
                        raise
                    tally.note(what, resp.status_code, time.monotonic() - started, resp.text)

                with contextlib.suppress(Unsatisfiable):  # no such case (nothing to negate)
                    send()
    return len(operations)


TENANTS = ("acme", "globex", "initech")
PATHS = ("/", "/api/status", "/api/approve", "/api", "/api/status/", "//", "/../etc/passwd")
text = st.text(alphabet=st.characters(codec="utf-8"), max_size=120)
ids = st.one_of(
    text,
    st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=100),
    st.sampled_from(("order-1", "memo-1", "", "-x", "a" * 101, "%2F", "..", "\u0000")),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
    max_leaves=30,
)
bodies = st.one_of(
    st.none(),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=2000),
    st.sampled_from((b"{", b"\xff\xfe", b"[" * 5000, b'{"a":' * 2000, b"1e999999")),
    # valid, and deep: what the tenant's json.loads takes, and then must cross to the host
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 1000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)


@st.composite
def dispatcher_requests(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(st.one_of(st.sampled_from(PATHS), text.map(lambda t: "/" + t)))
    params: dict[str, str] = {}
    for name in draw(st.lists(st.sampled_from(("id", "instanceId", "x")), max_size=3)):
        params[name] = draw(ids)
    headers = {}
    tenant = draw(st.one_of(st.none(), st.sampled_from(TENANTS), text))
    if tenant is not None:
        headers["x-tenant-id"] = tenant
    if draw(st.booleans()):
        headers["content-type"] = draw(st.sampled_from(("application/json", "text/plain", "x")))
    return {
        "method": draw(st.sampled_from(("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"))),
        "path": path,
        "params": params,
        "headers": headers,
        "content": draw(bodies),
    }


def _header_safe(value: str) -> str:
    # httpx refuses header values it cannot encode: keep what a client could send.
    return value.encode("latin-1", "replace").decode("latin-1").replace("\r", "").replace("\n", "")


NASTY_BODIES = (
    b"[" * 5000,  # a RecursionError in json.loads, which the example let through (a 500)
    b'{"a":' * 2000,
    b"[" * 990 + b"]" * 990,
    b"\xff\xfe\x00",
    b"1e999999",
    b'"' + b"x" * 1_000_000 + b'"',
    json.dumps({"n": 2**70}).encode(),
    json.dumps({"s": "\ud800"}).encode(),
)
"""Bodies sent to every tenant's routes before hypothesis's own."""


def fuzz_dispatcher(url: str, examples: int, tally: Tally, *, seed: int = 2) -> None:
    """Known-nasty bodies, then hypothesis-generated requests, to the example's dispatcher at
    ``url``."""
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        for tenant in TENANTS:
            for path in ("/", "/api/approve"):
                for n, body in enumerate(NASTY_BODIES):
                    params = {"id": f"nasty-{n}", "instanceId": f"{tenant}-0"}
                    started = time.monotonic()
                    try:
                        resp = client.post(
                            path, params=params, content=body, headers={"x-tenant-id": tenant}
                        )
                    except httpx.TimeoutException:
                        tally.note(f"POST {path} {body[:40]!r}", None, TIMEOUT)
                        continue
                    took = time.monotonic() - started
                    tally.note(f"POST {path} {body[:40]!r}", resp.status_code, took, resp.text)

        @hypothesis_seed(seed)
        @_settings(examples)
        @given(request=dispatcher_requests())
        def send(request: dict[str, Any]) -> None:
            headers = {k: _header_safe(v) for k, v in request["headers"].items()}
            what = f"{request['method']} {request['path']!r} {request['params']} {headers}"
            started = time.monotonic()
            try:
                resp = client.request(
                    request["method"],
                    request["path"],
                    params=request["params"],
                    headers=headers,
                    content=request["content"],
                )
            except httpx.TimeoutException:
                tally.note(what, None, time.monotonic() - started)
                return
            except (
                httpx.InvalidURL,
                httpx.UnsupportedProtocol,
                httpx.LocalProtocolError,
                UnicodeEncodeError,
            ):
                return  # not a request the client would send (a control byte in a header...)
            tally.note(what, resp.status_code, time.monotonic() - started, resp.text)

        send()
