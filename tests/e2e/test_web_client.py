"""The web client in headless Chromium against the real system behind the nginx entry point.

Debian's chromium is driven by Playwright's Python client (never `playwright install`); each
browser context is a separate browser profile, so a separate localStorage and session id.
Screenshots land in test-artifacts/e2e/ for a look after the run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from kubescaler.devstack.nginx import Nginx
from kubescaler.devstack.services import Service
from kubescaler.entrypoints.stream_app import web_page

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


#: Makes a browser context (a separate profile) on the entry point; optional viewport size.
MakeContext = Callable[..., BrowserContext]


@dataclass
class Pair:
    user: str
    profile: str

    @property
    def page(self) -> str:
        return f"/index/{self.user}/{self.profile}"


@pytest.fixture(scope="module")
def web_build() -> Path:
    """frontend/dist, rebuilt from source when node_modules is there (about a second)."""
    if (FRONTEND / "node_modules").is_dir() and shutil.which("npm"):
        subprocess.run(["npm", "run", "--silent", "build"], cwd=FRONTEND, check=True)
    dist = FRONTEND / "dist"
    if not (dist / "stream.html").is_file():
        pytest.fail("the web client is not built: run `npm ci && npm run build` in frontend/")
    return dist


@pytest.fixture(scope="module")
def pairs(main_service: Service) -> list[Pair]:
    """Fresh test data; every test takes pairs of its own so locks never leak between tests."""
    with httpx.Client(base_url=main_service.url, timeout=60) as main:
        main.delete("/testdata")
        r = main.post(
            "/testdata",
            params={
                "users": 20,
                "profiles": 10,
                "shared_users": 8,
                "users_per_profile": 1,
                "profiles_per_shared_user": 2,
            },
        )
        assert r.status_code == 201, r.text
        return [Pair(s["id"], s["profiles"][0]) for s in main.get("/suggested").json()]


@pytest.fixture
def pair(pairs: list[Pair]) -> Pair:
    return pairs.pop()


@pytest.fixture(scope="module")
def playwright_() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright_: Playwright, web_build: Path) -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    b = playwright_.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def new_context(browser: Browser, gateway: Nginx) -> Iterator[MakeContext]:
    """Make browser contexts (separate profiles: separate localStorage) on the entry point."""
    made: list[BrowserContext] = []

    def make(width: int = 1100, height: int = 900) -> BrowserContext:
        ctx = browser.new_context(base_url=gateway.url, viewport={"width": width, "height": height})
        ctx.set_default_timeout(15_000)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def value(page: Page, selector: str) -> float:
    return float(page.locator(selector).get_attribute("data-value") or "0")


def open_streaming(page: Page, pair: Pair) -> None:
    page.goto(pair.page)
    expect(page.locator("#state")).to_have_attribute("data-state", "streaming")


def test_stream_page_shows_data_arriving_and_bytes_rising(
    new_context: MakeContext, pair: Pair
) -> None:
    """The page names the instance and token, and its event and byte counts keep rising."""
    page = new_context().new_page()
    open_streaming(page, pair)
    expect(page.locator("#state")).to_have_text(re.compile(r"^Streaming from stream-[ab]"))
    expect(page.locator("#instance")).to_have_text(re.compile(r"^stream-[ab]$"))
    assert int(page.locator("#token").inner_text()) > 0
    page.wait_for_function("Number(document.getElementById('events').dataset.value) >= 10")
    first = value(page, "#bytes")
    page.wait_for_timeout(1500)
    assert value(page, "#bytes") > first > 0
    assert value(page, "#rate") > 0
    page.wait_for_function(
        "document.getElementById('chart-line').getAttribute('points').split(' ').length >= 3"
    )
    shot(page, "stream-page")
    small = new_context(390, 844).new_page()  # same pair, another session: a phone-sized refusal
    small.goto(pair.page)
    expect(small.locator("#state")).to_have_attribute("data-state", "refused")
    shot(small, "stream-page-phone-refused")


def test_second_session_is_refused_with_the_holders_expiry(
    new_context: MakeContext, pair: Pair
) -> None:
    """Another browser (another session) for a held pair reads 'refused' until a clock time."""
    holder = new_context().new_page()
    open_streaming(holder, pair)
    other = new_context().new_page()
    other.goto(pair.page)
    state = other.locator("#state")
    expect(state).to_have_attribute("data-state", "refused")
    expect(state).to_have_attribute("aria-live", "polite")
    expect(state).to_have_text(
        re.compile(r"^Refused: another session holds this pair until \d{1,2}:\d{2}:\d{2}")
    )
    assert other.locator("#session").inner_text() != holder.locator("#session").inner_text()
    assert value(other, "#events") == 0
    shot(other, "stream-page-refused")
    expect(holder.locator("#state")).to_have_attribute("data-state", "streaming")


def test_reload_takes_the_lock_back_at_once(new_context: MakeContext, pair: Pair) -> None:
    """A reload presents the same session id and streams again, without a lockout."""
    page = new_context().new_page()
    open_streaming(page, pair)
    session = page.locator("#session").inner_text()
    page.wait_for_function("Number(document.getElementById('events').dataset.value) >= 3")
    started = time.monotonic()
    page.reload()
    expect(page.locator("#state")).to_have_attribute("data-state", "streaming", timeout=5_000)
    assert time.monotonic() - started < 5  # well under the lock's TTL: no wait for it to lapse
    assert page.locator("#session").inner_text() == session
    page.wait_for_function("Number(document.getElementById('events').dataset.value) >= 3")


def test_a_second_tab_of_the_same_session_supersedes_the_first(
    new_context: MakeContext, pair: Pair
) -> None:
    """Two tabs share the session: the newer tab streams, the older one says in words that it
    was superseded (naming the newer token) and stays stopped instead of taking it back."""
    context = new_context()
    first = context.new_page()
    open_streaming(first, pair)
    second = context.new_page()
    open_streaming(second, pair)
    newer = second.locator("#token").inner_text()
    state = first.locator("#state")
    expect(state).to_have_attribute("data-state", "superseded", timeout=5_000)
    expect(state).to_have_text(
        re.compile(
            rf"^Superseded: this session opened a newer stream of this pair "
            rf"\(fencing token {newer}\)"
        )
    )
    assert int(newer) > int(first.locator("#token").inner_text())
    shot(first, "stream-page-superseded")
    events = value(first, "#events")
    first.wait_for_timeout(1500)  # longer than a refresh: no reconnect, no new events
    expect(state).to_have_attribute("data-state", "superseded")
    assert value(first, "#events") == events
    expect(second.locator("#state")).to_have_attribute("data-state", "streaming")
    expect(second.locator("#token")).to_have_text(newer)


def test_dashboard_lists_the_live_profile(new_context: MakeContext, pair: Pair) -> None:
    """While a page streams a pair, the dashboard marks that profile live and links to it."""
    streaming = new_context().new_page()
    open_streaming(streaming, pair)
    dash = new_context().new_page()
    dash.goto("/dashboard")
    item = dash.locator(f'tr[data-user="{pair.user}"] li[data-profile="{pair.profile}"]')
    expect(item).to_have_attribute("data-live", "true", timeout=20_000)
    expect(item.get_by_role("link")).to_have_attribute("href", pair.page)
    expect(dash.locator("#instances tbody tr").first).to_contain_text("stream-")
    expect(dash.locator("#updated")).to_have_text(re.compile(r"^Updated at"))
    shot(dash, "dashboard")


def test_pages_assets_and_instance_answer_through_the_entry_point(
    gateway: Nginx, web_build: Path
) -> None:
    """/ and /dashboard serve the built page, its assets load, /instance reports connections."""
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        for path in ("/", "/dashboard"):
            r = http.get(path)
            assert r.status_code == 200
            assert "<title>Dashboard" in r.text
        asset = re.search(r'src="(/assets/[^"]+\.js)"', http.get("/dashboard").text)
        assert asset
        assert http.get(asset.group(1)).status_code == 200
        info = http.get("/instance").json()
        assert info["instance"] in ("stream-a", "stream-b")
        assert isinstance(info["connections"], int)
        assert http.get("/index/not-a-uuid/x").status_code == 400


def test_an_unbuilt_client_says_how_to_build_it(tmp_path: Path) -> None:
    """Without a build the stream service answers 503 naming the build command."""
    r = web_page(tmp_path, "stream.html")
    assert r.status_code == 503
    assert b"npm ci &amp;&amp; npm run build" in r.content
