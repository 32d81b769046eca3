"""The KPI dashboard in headless Chromium, over the plain uvicorn app (no Ray): it renders, its
numbers are the API's, it updates while events flow without a reload, and it shows nothing
without an admin key. A screenshot is kept as a test artifact.

They need Debian's ``chromium`` and ``chromium-driver``, which ``make test`` installs
(``scripts/services.sh``); without them they fail, naming what is missing.
"""

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from benchmarks.dashboard import (
    browser_missing,
    build_platform,
    chromium,
    ingest,
    sign_in,
)
from serve_deployments.plain import subprocess_server

pytestmark = [pytest.mark.integration]
ARTIFACTS = Path(os.environ.get("DDSO_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[2] / ".ddso" / "test-artifacts")


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    return build_platform(tmp_path_factory.mktemp("dashboard-home"), customers=600, days=120)


@pytest.fixture(scope="module")
def url(platform):
    with subprocess_server(platform["args"]) as base:
        yield base


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def browser():
    why = browser_missing()
    if why:  # `make test` installs it (scripts/services.sh): its absence is a failure
        pytest.fail(f"headless Chromium is required: {why}")
    with chromium() as driver:
        yield driver


def _lookup(obj, pointer: str):
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def _page_values(driver) -> dict[str, object]:
    pairs = driver.execute_script(
        "return Array.from(document.querySelectorAll('[data-kpi]'))"
        ".map(e => [e.getAttribute('data-kpi'), e.getAttribute('data-value'), e.textContent]);")
    for pointer, _, text in pairs:
        assert text.strip(), f"{pointer} shows nothing"
    return {pointer: json.loads(value) for pointer, value, _ in pairs}


def _wait(predicate, timeout_s: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not met within {timeout_s:g} s")


def test_numbers_count_the_offline_store(platform, url):
    """The funnel is distinct customers per stage (as ``ddso data describe`` counts them) of
    what the stream job ingested; every snapshot customer is a lead."""
    from ddso.stores.offline import OfflineStore

    k = httpx.get(f"{url}/v1/kpis", headers=bearer(platform["admin"])).json()
    ev = OfflineStore(platform["settings"].offline_store_path()).read(
        ["customer_id", "type"]).to_pandas()
    customers = pd.read_parquet(platform["data"] / "warehouse" / "customers")
    leads = len(set(customers.customer_id) | set(ev.customer_id))
    assert k["funnel"]["leads"] == leads
    for stage, type_ in (("contacted", "offer_shown"), ("enrolled", "enrollment"),
                         ("graduated", "graduation"), ("churned", "churn")):
        assert k["funnel"][stage] == ev.loc[ev.type == type_, "customer_id"].nunique(), stage
    assert k["rates"]["conversion"] == round(k["funnel"]["enrolled"] / leads, 6)
    assert k["rates"]["conversion_baseline"] == 0.009
    assert k["rates"]["graduation_baseline"] == 0.0069
    assert k["freshness"]["events"] == len(ev)
    assert k["segments"]["sizes"] == customers.lifecycle_stage.value_counts().to_dict()
    assert k["experiments"] == {"running": False, "detail": "no experiment running", "arms": []}


def test_without_an_admin_key_nothing_is_shown(platform, url):
    page = httpx.get(f"{url}/dashboard")
    assert page.status_code == 401 and 'data-page="login"' in page.text
    assert "data-kpi" not in page.text and "Content-Security-Policy" in page.headers
    assert httpx.get(f"{url}/v1/kpis").status_code == 401
    decide_only = bearer(platform["decide"])
    assert httpx.get(f"{url}/v1/kpis", headers=decide_only).status_code == 403
    refused = httpx.get(f"{url}/dashboard", headers=decide_only)
    assert refused.status_code == 403 and "data-kpi" not in refused.text
    wrong = httpx.post(f"{url}/dashboard/login", data={"token": "ddso_000000000000_" + "x" * 43})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers


def test_sign_in_sets_a_strict_http_only_cookie_for_the_dashboard_only(platform, url):
    r = httpx.post(f"{url}/dashboard/login", data={"token": platform["admin"]})
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    jar = {"ddso_dashboard": platform["admin"]}
    assert httpx.get(f"{url}/v1/kpis", cookies=jar).status_code == 200
    assert httpx.get(f"{url}/dashboard", cookies=jar).status_code == 200
    # Other routes still take the Bearer header only.
    assert httpx.get(f"{url}/metrics", cookies=jar).status_code == 401
    out = httpx.post(f"{url}/dashboard/logout", cookies=jar)
    assert out.status_code == 303 and 'ddso_dashboard=""' in out.headers["set-cookie"]


def test_page_renders_the_apis_numbers_and_updates_while_events_flow(platform, url, browser):
    sign_in(browser, url, platform["admin"])
    api = httpx.Client(base_url=url, headers=bearer(platform["admin"]), timeout=30)

    def same_moment():
        # The page and the API agree once both show the same cached computation.
        shown = _page_values(browser)
        k = api.get("/v1/kpis").json()
        return (shown, k) if shown["/generated_at"] == k["generated_at"] else None

    shown, k = _wait(same_moment, what="page and API at the same computation")
    for pointer in ("/funnel/leads", "/funnel/contacted", "/funnel/enrolled",
                    "/funnel/graduated", "/rates/conversion", "/rates/graduation",
                    "/rates/churn", "/freshness/events"):
        assert pointer in shown, f"{pointer} is not on the page"
    assert any(p.startswith("/segments/sizes/") for p in shown)
    assert any(p.startswith("/latency/") for p in shown)
    for pointer, value in shown.items():
        assert value == _lookup(k, pointer), pointer
    assert browser.execute_script(
        "return document.getElementById('series-chart').getAttribute('data-points')") \
        == str(len(k["conversion_series"]))

    # Events flow: a new lead is contacted and enrols, through POST /v1/events and the stream
    # job; the page shows it without a reload.
    browser.execute_script("window.__sameLoad = true;")
    before = k["funnel"]
    now = datetime.now(UTC).isoformat()
    common = {"customer_id": "DASHBOARD-NEW-1", "event_time": now, "source": "api"}
    events = [
        {**common, "type": "offer_shown", "event_id": "dash-e1", "offer_id": "o1",
         "product_id": "p1", "channel": "email"},
        {**common, "type": "enrollment", "event_id": "dash-e2", "enrollment_id": "n1",
         "product_id": "p1", "monthly_payment": 25.0},
    ]
    r = httpx.post(f"{url}/v1/events", json={"events": events},
                   headers=bearer(_ingest_key(platform)))
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    assert ingest(platform["settings"])["applied"] >= 2

    def updated():
        shown = _page_values(browser)
        return shown if shown["/funnel/enrolled"] == before["enrolled"] + 1 else None

    shown = _wait(updated, what="the page showing the new enrolment")
    assert shown["/funnel/leads"] == before["leads"] + 1
    assert shown["/funnel/contacted"] == before["contacted"] + 1
    assert shown["/freshness/last_ingested_age_s"] < 60
    assert browser.execute_script("return window.__sameLoad === true;"), "the page reloaded"
    assert int(browser.execute_script("return document.body.getAttribute('data-updates')")) > 0

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"dashboard screenshot: {shot}")


def _ingest_key(platform) -> str:
    from serve_deployments.security import key_store

    return key_store(platform["settings"]).create_key("ingest", name="events")[1]
