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

from kubescaler.entrypoints.stream_app import web_page
from kubescaler_dev.nginx import Nginx
from kubescaler_dev.services import Service

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
    yield from contexts(browser, gateway.url)


def contexts(browser: Browser, base_url: str) -> Iterator[MakeContext]:
    """A context maker for a fixture to yield; the contexts it made are closed afterwards."""
    made: list[BrowserContext] = []

    def make(width: int = 1100, height: int = 900) -> BrowserContext:
        ctx = browser.new_context(base_url=base_url, viewport={"width": width, "height": height})
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


# ------------------------------------------------------------------ the auth mode (issue 13)

ADMIN = "00000000-0000-0000-0000-00000000a0a0"


@pytest.fixture(scope="module")
def auth_pairs(auth_main: Service, mint_token: Callable[..., str]) -> list[Pair]:
    """Pairs of users new to this module's data, made through the auth-on main as an admin."""
    admin = {"Authorization": f"Bearer {mint_token(ADMIN, admin=True)}"}
    with httpx.Client(base_url=auth_main.url, timeout=60, headers=admin) as main:
        before = {s["id"] for s in main.get("/suggested").json()}
        r = main.post(
            "/testdata",
            params={
                "users": 10,
                "profiles": 6,
                "shared_users": 4,
                "users_per_profile": 1,
                "profiles_per_shared_user": 2,
            },
        )
        assert r.status_code == 201, r.text
        suggested = main.get("/suggested").json()
    return [Pair(s["id"], s["profiles"][0]) for s in suggested if s["id"] not in before]


@pytest.fixture
def auth_context(browser: Browser, auth_gateway: Nginx) -> Iterator[MakeContext]:
    """Browser contexts (separate profiles and cookie jars) on the auth-on entry point."""
    yield from contexts(browser, auth_gateway.url)


def stream_requests(page: Page) -> list[str]:
    """The URLs of the page's /stream/ requests, as they are made."""
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url) if "/stream/" in r.url else None)
    return urls


def test_auth_on_the_stream_page_streams_with_the_token_in_its_address(
    auth_context: MakeContext, auth_pairs: list[Pair], mint_token: Callable[..., str]
) -> None:
    """The query form: a page opened with ?access_token= streams with the token in the stream's
    URL (no cookie involved), and its link back to the dashboard keeps the token."""
    pair = auth_pairs.pop()
    token = mint_token(pair.user)
    ctx = auth_context()
    page = ctx.new_page()
    urls = stream_requests(page)
    page.goto(f"{pair.page}?access_token={token}")
    expect(page.locator("#state")).to_have_attribute("data-state", "streaming")
    page.wait_for_function("Number(document.getElementById('events').dataset.value) >= 3")
    assert urls
    assert all(f"access_token={token}" in u for u in urls), urls
    assert ctx.cookies() == [] or all(c["name"] != "kubescaler_token" for c in ctx.cookies())
    expect(page.locator("#auth-form")).to_contain_text("address")
    back = page.get_by_role("navigation").get_by_role("link", name="Dashboard")
    expect(back).to_have_attribute("href", f"/dashboard?access_token={token}")
    shot(page, "auth-stream-page-query-token")


def test_auth_on_signing_in_on_the_dashboard_streams_with_the_cookie(
    auth_context: MakeContext, auth_pairs: list[Pair], mint_token: Callable[..., str]
) -> None:
    """The cookie form: the dashboard says nobody is signed in, takes a pasted token, says who
    you are; the token then lives in an HttpOnly cookie (scripts cannot read it), and the
    stream page streams with it, the stream's URL carrying no token."""
    pair = auth_pairs.pop()
    token = mint_token(pair.user)
    ctx = auth_context()
    dash = ctx.new_page()
    dash.goto("/dashboard")
    expect(dash.locator("#who")).to_have_attribute("data-state", "signed-out")
    expect(dash.locator("#who")).to_contain_text("Not signed in")
    dash.locator("#signin-token").fill("not a token")
    dash.get_by_role("button", name="Sign in").click()
    expect(dash.locator("#signin-error")).to_contain_text("not a token")
    dash.locator("#signin-token").fill(token)
    dash.get_by_role("button", name="Sign in").click()
    expect(dash.locator("#who")).to_have_attribute("data-state", "signed-in")
    expect(dash.locator("#who")).to_contain_text(f"Signed in as {pair.user}")
    expect(dash.locator("#who")).to_contain_text("cookie")
    expect(dash.locator(f'tr[data-user="{pair.user}"]')).to_have_attribute("data-mine", "true")
    (cookie,) = [c for c in ctx.cookies() if c["name"] == "kubescaler_token"]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"
    assert "kubescaler_token" not in dash.evaluate("document.cookie")
    shot(dash, "auth-dashboard-signed-in")
    page = ctx.new_page()
    urls = stream_requests(page)
    page.goto(pair.page)
    expect(page.locator("#state")).to_have_attribute("data-state", "streaming")
    page.wait_for_function("Number(document.getElementById('events').dataset.value) >= 3")
    assert urls
    assert not any("access_token" in u for u in urls), urls
    shot(page, "auth-stream-page-cookie")
    dash.get_by_role("button", name="Sign out").click()
    expect(dash.locator("#who")).to_have_attribute("data-state", "signed-out")
    assert not [c for c in ctx.cookies() if c["name"] == "kubescaler_token"]


def test_auth_on_without_a_token_the_page_is_refused_and_the_stream_says_why(
    auth_context: MakeContext, auth_pairs: list[Pair], mint_token: Callable[..., str]
) -> None:
    """No token: /index itself is 401. A page whose stream is refused (its token swapped on the
    way for an expired one) says it cannot stream and why, and does not retry."""
    pair = auth_pairs.pop()
    page = auth_context().new_page()
    response = page.goto(pair.page)
    assert response is not None
    assert response.status == 401
    good, expired = mint_token(pair.user), mint_token(pair.user, ttl_s=-120)  # past the leeway
    page.route(
        "**/stream/**",
        lambda route: route.continue_(url=route.request.url.replace(good, expired)),
    )
    tries = stream_requests(page)
    page.goto(f"{pair.page}?access_token={good}")
    state = page.locator("#state")
    expect(state).to_have_attribute("data-state", "failed")
    expect(state).to_have_text(re.compile(r"^Cannot stream \(401\): the token has expired"))
    page.wait_for_timeout(1500)
    assert len(tries) == 1, tries  # a refused token is not retried
    shot(page, "auth-stream-page-expired")
