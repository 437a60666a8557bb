"""The dashboard in a real browser: Debian's Chromium driven by Playwright (headless), against
the insights service started as its own process on PostgreSQL and NATS, fed a partnership's
events through JetStream as the other services' relays publish them.

Signs in through the development page, filters, reads charts' tables and checks them against
the figures API, downloads CSVs, runs axe-core (from its npm package) on every page, works
with JavaScript off and from the keyboard, and keeps a screenshot of each page in
`.data/screenshots/` (printed at the end)."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import nats
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from insights.web.pages import PAGES, TABLES, build_table
from pathways_shared.events import STREAMS, Event, stream_name
from pathways_shared.testing import NATS_URL, TEST_JWT_SECRET, auth, free_port

from .feed import COVENTRY, DUDLEY, SOLIHULL, Feed, partnership_events

# The service under test runs as its own process on the machine's clock, while the feed's dates
# come from this process's clock: they must be the same clock.
pytestmark = pytest.mark.real_clock(
    "the insights service runs as a separate process on the real clock; its default period "
    "and the feed's dates must agree"
)

SERVICE_ROOT = Path(__file__).resolve().parents[2]
ROOT = SERVICE_ROOT.parents[1]
SCREENSHOTS = ROOT / ".data" / "screenshots"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("PATHWAYS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
MY_AREAS = [SOLIHULL, COVENTRY]


@dataclass
class Dashboard:
    url: str
    feed: Feed
    log: Path

    def api(self, path: str, params: list[tuple[str, str]], *, areas=MY_AREAS, **kw: Any) -> httpx.Response:
        headers = auth("partnership", areas=areas) if areas is not None else auth("admin")
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=10, **kw)


async def _publish(events: list[Event], prefix: str) -> None:
    nc = await nats.connect(NATS_URL, connect_timeout=2)
    try:
        js = nc.jetstream()
        for event in events:
            await js.publish(f"{prefix}{event.event_type}", event.to_json(),
                             headers={"Nats-Msg-Id": str(event.id)})
    finally:
        await nc.close()


async def _delete_streams(prefix: str) -> None:
    nc = await nats.connect(NATS_URL, connect_timeout=2)
    try:
        for name in STREAMS:
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_stream(stream_name(name, prefix))
    finally:
        await nc.close()


def _wait(predicate, what: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            last = predicate()
            if last is True:
                return
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})\n{tail}")


@pytest.fixture(scope="module")
def dashboard(make_database, tmp_path_factory) -> Iterator[Dashboard]:
    """`python -m insights` on a free port, its own database and subjects, fed and caught up."""
    database_url = make_database("insights_browser", SERVICE_ROOT)
    workdir = tmp_path_factory.mktemp("dashboard")
    prefix = f"dash{uuid.uuid4().hex[:6]}."
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIGHTS_")}
    env.update(
        PATHWAYS_ENV="test", PATHWAYS_JWT_SECRET=TEST_JWT_SECRET, PATHWAYS_SUBJECT_PREFIX=prefix,
        PATHWAYS_LOG_JSON="true", NATS_URL=NATS_URL, INSIGHTS_DATABASE_URL=database_url,
        INSIGHTS_PORT=str(port), INSIGHTS_HOST="127.0.0.1", INSIGHTS_DATABASE_POOL_SIZE="6",
    )
    log = workdir / "insights.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "insights"], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    board = Dashboard(f"http://127.0.0.1:{port}", partnership_events(), log)
    try:
        _wait(lambda: httpx.get(f"{board.url}/health/ready", timeout=1).status_code == 200,
              "readiness", log)
        asyncio.run(_publish(board.feed.events, prefix))

        def caught_up() -> Any:
            needs = board.api("/figures/needs", [], areas=None).json()["total"]
            cohorts = board.api("/figures/cohorts", [], areas=None).json()["total"]
            dtr = board.api("/figures/duty-to-refer", [], areas=None).json()["total"]
            seen = (needs["submitted"], needs["allocated"], cohorts["adopted"], dtr["duty_to_refer_sent"])
            feed = board.feed
            return seen == (feed.needs, feed.allocations, feed.adoptions, feed.notices) or seen

        _wait(caught_up, "every event projected", log)
        yield board
    finally:
        process.terminate()
        with contextlib.suppress(Exception):
            process.wait(20)
        asyncio.run(_delete_streams(prefix))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def signed_in(browser: Browser, board: Dashboard, *, javascript: bool = True,
              areas: list[str] = MY_AREAS) -> Iterator[tuple[BrowserContext, Page]]:
    context = browser.new_context(java_script_enabled=javascript, accept_downloads=True,
                                  viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(f"{board.url}/providers")
        assert urlsplit(page.url).path == "/dev/sign-in"  # not signed in: sent to sign in
        page.get_by_label("Partnership analyst").check()
        for code in areas:
            page.locator(f'input[name="areas"][value="{code}"]').check()
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
        assert urlsplit(page.url).path == "/providers"  # and back where they were going
        yield context, page
    finally:
        context.close()


def read_table(page: Page, table_id: str) -> dict[str, list[str]]:
    """The table as the reader sees it: row header -> cell texts."""
    table = page.locator(f'table[data-table="{table_id}"]')
    rows = {}
    for tr in table.locator("tbody tr").all():
        rows[tr.locator("th").inner_text().strip()] = [td.inner_text().strip() for td in tr.locator("td").all()]
    return rows


def expected_table(board: Dashboard, table_id: str, params: list[tuple[str, str]],
                   areas: list[str] = MY_AREAS) -> dict[str, list[str]]:
    """The same table made from the figures API's JSON (fetched over HTTP with a token)."""
    _, spec = TABLES[table_id]
    response = board.api(f"/figures/{spec.kind}", [*params, ("by", ",".join(spec.by))], areas=areas)
    assert response.status_code == 200, response.text
    answer = response.json()
    view = build_table(spec, answer, threshold=answer["suppression"]["threshold"])
    rows = {label: [c.text for c in cells] for label, cells in view.rows}
    if view.total:
        rows[view.total[0]] = [c.text for c in view.total[1]]
    return rows


def axe_violations(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        """async () => await axe.run(document, {runOnly: {type: 'tag', values:
            ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']}})"""
    )
    assert len(result["passes"]) > 10, "axe did not run its rules"
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"] if v["impact"] in ("serious", "critical")
    ]


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


# --- the tests -----------------------------------------------------------------------------
def test_sign_in_filter_and_read_the_same_figures_as_the_api(dashboard, browser):
    with signed_in(browser, dashboard) as (_, page):
        page.get_by_role("link", name="Overview").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "Overview"
        # Not all zero, and only the caller's areas (Dudley's needs are not among them).
        shown = read_table(page, "needs-by-pathway")
        api_total = dashboard.api("/figures/needs", []).json()["total"]
        assert shown["Total"][0] == f"{api_total['submitted']:,}"
        assert 0 < api_total["submitted"] < dashboard.feed.needs
        assert shown == expected_table(dashboard, "needs-by-pathway", [])
        # The chart beside the table is an accessible image drawn from the same rows.
        chart = page.locator("#needs-by-pathway svg[role=img]")
        assert chart.get_attribute("aria-labelledby")
        assert chart.locator("title").text_content() == "Needs submitted by pathway"

        # Filter: Solihull only, accommodation, a period; the form is a plain GET.
        page.locator('input[name="area"][value="E08000029"]').check()
        page.get_by_label("Pathway", exact=True).select_option("accommodation")
        start = (date.today() - timedelta(days=400)).isoformat()
        page.get_by_label("From", exact=True).fill(start)
        page.get_by_role("button", name="Apply filters").click()
        page.wait_for_load_state()
        query = parse_qs(urlsplit(page.url).query)
        assert query["area"] == [SOLIHULL] and query["pathway"] == ["accommodation"]
        params = [("area", SOLIHULL), ("pathway", "accommodation"),
                  ("from", start), ("to", query["to"][0])]
        for table_id in ("needs-by-month", "needs-by-pathway", "unmet-need-by-reason"):
            assert read_table(page, table_id) == expected_table(dashboard, table_id, params), table_id
        assert list(read_table(page, "needs-by-pathway")) == ["Accommodation", "Total"]
        shot(page, "overview-filtered")


def test_every_table_downloads_as_the_apis_csv(dashboard, browser):
    with signed_in(browser, dashboard) as (_, page):
        for spec in PAGES:
            page.goto(f"{dashboard.url}{spec.path}?area={SOLIHULL}&area={COVENTRY}")
            for table in spec.tables:
                link = page.locator(f'#{table.id} a[download]')
                with page.expect_download() as info:
                    link.click()
                body = Path(info.value.path()).read_bytes().decode()
                params = [("area", SOLIHULL), ("area", COVENTRY), ("by", ",".join(table.by)),
                          ("format", "csv")]
                api = dashboard.api(f"/figures/{table.kind}", params)
                assert api.status_code == 200
                assert body == api.text, table.id
                header = next(csv.reader(io.StringIO(body)))
                assert header[: len(table.by)] == list(table.by)


def test_every_page_passes_axe_and_is_kept_as_a_screenshot(dashboard, browser, capsys):
    failures = {}
    # axe is injected as an inline script: the page's Content-Security-Policy would refuse it
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    try:
        response = page.goto(f"{dashboard.url}/dev/sign-in")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        failures["sign-in"] = axe_violations(page)
        shot(page, "sign-in")
        page.get_by_role("button", name="Sign in").click()  # nothing ticked: an error
        page.wait_for_load_state()
        assert page.locator(".govuk-error-summary").is_visible()
        failures["sign-in-error"] = axe_violations(page)
        page.locator(f'input[name="areas"][value="{SOLIHULL}"]').check()
        page.locator(f'input[name="areas"][value="{COVENTRY}"]').check()
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
        for spec in PAGES:
            page.goto(f"{dashboard.url}{spec.path}")
            assert page.locator("table").count() == len(spec.tables), spec.slug
            failures[spec.slug] = axe_violations(page)
            shot(page, spec.slug)
        # On a phone's width (WCAG reflow) the wide tables scroll within a focusable region.
        page.set_viewport_size({"width": 375, "height": 800})
        for path, name in (("/", "overview-narrow"), ("/providers", "providers-narrow")):
            page.goto(f"{dashboard.url}{path}")
            failures[name] = axe_violations(page)
            shot(page, name)
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(f"{dashboard.url}/?from=2026-02-30")
        assert page.locator(".govuk-error-summary").is_visible()
        failures["filter-error"] = axe_violations(page)
        shot(page, "filter-error")
        page.goto(f"{dashboard.url}/equality?area={DUDLEY}")
        assert page.get_by_role("heading", level=1).inner_text() == "You cannot see figures for that area"
        failures["forbidden"] = axe_violations(page)
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_load_state()
        failures["signed-out"] = axe_violations(page)
    finally:
        context.close()
    with capsys.disabled():
        print(f"\n    dashboard screenshots: {SCREENSHOTS}/")
    assert {name: found for name, found in failures.items() if found} == {}


def test_tables_and_filters_work_with_javascript_off(dashboard, browser):
    with signed_in(browser, dashboard, javascript=False) as (_, page):
        page.goto(f"{dashboard.url}/equality")
        assert "js-enabled" not in (page.locator("body").get_attribute("class") or "")
        page.locator('input[name="area"][value="E08000026"]').check()
        page.get_by_role("button", name="Apply filters").click()
        page.wait_for_load_state()
        assert parse_qs(urlsplit(page.url).query)["area"] == [COVENTRY]
        to = parse_qs(urlsplit(page.url).query)["to"][0]
        params = [("area", COVENTRY), ("to", to)]
        for table_id in ("needs-by-sex", "needs-by-age-band", "needs-by-supervision"):
            assert read_table(page, table_id) == expected_table(dashboard, table_id, params), table_id
        shot(page, "equality-no-javascript")
        # A bad date is sent back to the form with its message, not a failure.
        page.get_by_label("From", exact=True).fill("not a date")
        page.get_by_role("button", name="Apply filters").click()
        page.wait_for_load_state()
        summary = page.locator(".govuk-error-summary")
        assert "must be a real date" in summary.inner_text()
        shot(page, "equality-no-javascript-error")


def test_keyboard_reaches_the_skip_link_first_and_sees_focus(dashboard, browser):
    with signed_in(browser, dashboard) as (_, page):
        page.goto(f"{dashboard.url}/cohorts")
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.className")
        assert "govuk-skip-link" in focused
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main-content"
        # Every filter is reachable by Tab and shows GOV.UK's yellow focus.
        page.locator("#filter-from").focus()
        outline = page.evaluate(
            "getComputedStyle(document.activeElement).outlineColor + ' ' + getComputedStyle(document.activeElement).boxShadow"
        )
        assert "rgb(255, 221, 0)" in outline


PAGE_OVERFLOW = """() => {
    const width = document.documentElement.clientWidth;
    const wider = [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > width + 1 && !e.closest('.app-table-scroll'))
        .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + [...e.classList].join('.'));
    return {scroll: document.documentElement.scrollWidth, width, wider: wider.slice(0, 5)};
}"""


def test_at_a_phones_width_no_page_scrolls_sideways_and_wide_tables_scroll_in_a_region(
    dashboard, browser
):
    """WCAG 1.4.10 reflow at 320 CSS px of content (a 375 px phone): the page never scrolls
    sideways; a table wider than the screen scrolls within its own wrapper, which keyboard
    users can focus (tabindex) and screen readers announce by the table's heading."""
    scrolled = 0
    for javascript in (True, False):
        with signed_in(browser, dashboard, javascript=javascript) as (_, page):
            scrolled += _fits_a_phone(dashboard, page, shoot=javascript)
    assert scrolled > 0  # some tables are wider than a phone: they scroll, not the page


def _fits_a_phone(dashboard: Dashboard, page: Page, *, shoot: bool) -> int:
    """Checks every page at 375 px; how many tables scroll within their wrapper."""
    page.set_viewport_size({"width": 375, "height": 800})
    scrolled = 0
    for spec in PAGES:
        page.goto(f"{dashboard.url}{spec.path}")
        overflow = page.evaluate(PAGE_OVERFLOW)
        assert overflow["scroll"] <= overflow["width"], (spec.slug, overflow)
        assert overflow["wider"] == [], (spec.slug, overflow)
        for table in spec.tables:
            wrapper = page.locator(f"#{table.id} .app-table-scroll")
            assert wrapper.get_attribute("tabindex") == "0"
            assert wrapper.get_attribute("role") == "region"
            assert wrapper.get_attribute("aria-labelledby") == f"{table.id}-heading"
            box = wrapper.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375 + 1
            widths = wrapper.evaluate("e => [e.scrollWidth, e.clientWidth]")
            scrolled += widths[0] > widths[1]
        if spec.slug == "providers" and shoot:
            shot(page, "providers-narrow-reflow")
    return scrolled
