"""The web exchange in a real browser (docs/web.md): Debian's chromium driven by Playwright,
against the whole local exchange as ``make run`` starts it (``python -m infra.run`` on free
ports, the page built by it when missing or stale).

Two people sign up in two browser contexts and fund themselves on the local chain (the faucet
plays their own wallets; the page shows the deposit address and the confirmations counting up).
Carol offers ETH; the offer shows in both order books without a reload; a refused order shows
its reason; Dave takes the offer from the book with the form; both see the trade (recent
trades, ticker, chart, balances, their fills with fee and role). Carol cancels an order; Dave
withdraws to an outside address and follows it to confirmed with its transaction hash; API keys
are made (secret shown once) and revoked; a session ended elsewhere brings the page back to
the login. Screenshots of the main screens go to tests/browser/artifacts/ (not committed).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Route,
    expect,
    sync_playwright,
)

from infra.processes import REPO_ROOT
from infra.tools import ensure_chromium
from shared.redis_keys import live_depth_channel
from tests.integration.http_client import HttpClient
from tests.integration.test_readme import LocalExchange, local_exchange

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ARTIFACTS = REPO_ROOT / "tests" / "browser" / "artifacts"
PASSWORD = "a long browser password"
MARKET = "ETH-USDT"
OUTSIDE = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # anvil's account 9: not the exchange's
TX_HASH = re.compile(r"^0x[0-9a-f]{64}$")
WAIT_MS = 60_000
"""How long a page may take to show what the exchange does (chain confirmations included)."""


@pytest.fixture(scope="module")
def exchange() -> Iterator[LocalExchange]:
    workdir = Path(tempfile.mkdtemp(prefix="web-"))
    workdir.chmod(0o755)  # Postgres (the postgres user, when we are root) works in it
    try:
        with local_exchange(workdir) as ex:
            yield ex
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = ensure_chromium()
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(executable), args=["--no-sandbox"])
        yield b
        b.close()


def state_env(ex: LocalExchange) -> dict[str, str]:
    """The environment ``make run`` wrote in STATE/env (its services' addresses)."""
    env: dict[str, str] = {}
    for line in (ex.workdir / ".state" / "env").read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0] if value else ""
    return env


def new_context(browser: Browser, **options: object) -> BrowserContext:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, **options)  # type: ignore[arg-type]
    ctx.set_default_timeout(WAIT_MS)
    return ctx


def watch(page: Page, errors: list[str]) -> Page:
    """Collect what the page complains about: script errors, CSP violations (not the API's
    error statuses, which the page shows in words)."""
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.text.startswith(_HTTP_STATUS):
            errors.append(f"{page.url}: {msg.text}")

    page.on("console", console)
    page.on("dialog", lambda dialog: dialog.accept())
    return page


_HTTP_STATUS = "Failed to load resource: the server responded with a status of"


def shot(page: Page, name: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def sign_up(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/#/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#logout")).to_be_visible()


def fund(page: Page, ex: LocalExchange, asset: str, amount: str) -> None:
    """Send ``amount`` of ``asset`` from the faucet to the address the wallet page shows, and
    wait for the page to show it credited."""
    page.goto(f"{ex.api}/#/wallet")
    page.locator("#wallet-asset").select_option(asset)
    expect(page.locator("#dep-title")).to_have_text(f"Deposit {asset}")
    address = page.locator("#deposit-address").inner_text(timeout=WAIT_MS)
    flag = "--eth" if asset == "ETH" else "--usdt"
    subprocess.run(
        [sys.executable, "-m", "infra.devchain", "faucet", address, flag, amount,
         "--state-dir", str(ex.workdir / ".state")],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )  # fmt: skip
    expect(page.locator("#deposits tbody tr").first).to_be_visible()
    expect(page.locator('#deposits tr[data-status="credited"]')).to_have_count(1)
    expect(page.locator(f'#balances tr[data-asset="{asset}"] .available')).to_have_text(amount)


def test_two_people_trade_deposit_and_withdraw(exchange: LocalExchange, browser: Browser) -> None:
    base = exchange.api
    errors: list[str] = []
    carol_ctx, dave_ctx = new_context(browser), new_context(browser)
    carol, dave = watch(carol_ctx.new_page(), errors), watch(dave_ctx.new_page(), errors)

    carol.goto(f"{base}/")
    expect(carol.locator(f'table.markets tr[data-market="{MARKET}"]')).to_be_visible()
    shot(carol, "markets")

    sign_up(carol, base, "carol@example.com")
    sign_up(dave, base, "dave@example.com")
    fund(carol, exchange, "ETH", "2")
    shot(carol, "wallet-deposit", full_page=True)
    fund(dave, exchange, "USDT", "5000")

    # The session survives a reload (the refresh cookie), the access token is not stored.
    dave.reload()
    expect(dave.locator("#balances")).to_be_visible()
    assert "access_token" not in str(dave.evaluate("JSON.stringify(localStorage)"))

    for page in (carol, dave):
        page.goto(f"{base}/#/market/{MARKET}")
        expect(page.locator("#order-form")).to_be_visible()
        expect(page.locator("#book-title")).to_be_visible()

    # Carol offers 1 ETH at 2000: both books show it without a reload.
    carol.locator('button[data-side="sell"]').click()
    carol.locator("#order-price").fill("2000")
    carol.locator("#order-amount").fill("1")
    expect(carol.locator("#order-available")).to_have_text("Available: 2 ETH")
    carol.locator("#order-submit").click()
    expect(carol.locator("#order-message")).to_contain_text("open")
    for page in (carol, dave):
        expect(page.locator('#book tr.ask[data-price="2000"]')).to_be_visible()
    expect(carol.locator("#order-available")).to_have_text("Available: 1 ETH")
    expect(carol.locator("section:has(#open-title) tr[data-order]")).to_have_count(1)

    # Refusals in words: one the page catches, one the engine gives.
    dave.locator("#order-price").fill("2000.001")
    dave.locator("#order-amount").fill("1")
    dave.locator("#order-submit").click()
    expect(dave.locator("#order-message")).to_have_text("The price must be a multiple of 0.01.")
    dave.locator("#order-price").fill("2000")
    dave.locator("#order-post-only").check()
    dave.locator("#order-submit").click()
    expect(dave.locator("#order-message")).to_contain_text("Post-only: this price would trade")
    dave.locator("#order-post-only").uncheck()
    shot(dave, "market-refused")

    # Dave takes the offer from the book, with the keyboard: the level fills the form (buy,
    # its price and amount).
    dave.locator("#order-price").fill("")
    dave.locator('#book tr.ask[data-price="2000"]').focus()
    dave.keyboard.press("Enter")
    expect(dave.locator("#order-price")).to_have_value("2000")
    expect(dave.locator("#order-amount")).to_have_value("1")
    expect(dave.locator('button[data-side="buy"]')).to_have_attribute("aria-pressed", "true")
    dave.locator("#order-submit").click()
    expect(dave.locator("#order-message")).to_contain_text("filled")

    for page in (carol, dave):
        expect(page.locator("#trades tbody tr").first).to_contain_text("2000")
        expect(page.locator('#book tr.ask[data-price="2000"]')).to_have_count(0)
        expect(page.locator(".ticker-last")).to_have_text("2000")
        expect(page.locator(".chart-state")).to_have_text("")  # the first candle is drawn
    expect(dave.locator("#order-available")).to_have_text("Available: 3000 USDT")

    # An update lost upstream (one made up here that skips a version): each page sees the gap,
    # subscribes again and shows the true book, never the made-up level.
    book = dave.locator("section:has(#book)")
    seq = int(book.get_attribute("data-seq") or "0")
    live = redis.Redis.from_url(state_env(exchange)["REDIS_URL"])
    gapped = {
        "market": MARKET,
        "seq": seq + 2,
        "prev_seq": seq + 1,
        "bids": [["1", "1"]],
        "asks": [],
    }
    live.publish(live_depth_channel(MARKET), json.dumps(gapped))
    live.close()
    for page in (carol, dave):
        expect(page.locator("section:has(#book)")).to_have_attribute("data-resyncs", "1")
        expect(page.locator("#book tr.level")).to_have_count(0)
    carol.locator('button[data-side="buy"]').click()
    expect(carol.locator("#order-available")).to_have_text("Available: 1998 USDT")

    # New orders on both sides: Dave bids by the total he wants to spend.
    carol.locator('button[data-side="sell"]').click()
    carol.locator("#order-price").fill("2100")
    carol.locator("#order-amount").fill("0.5")
    carol.locator("#order-submit").click()
    dave.locator("#order-by").select_option("total")
    dave.locator("#order-price").fill("1990")
    dave.locator("#order-total").fill("597")
    expect(dave.locator("#order-summary")).to_have_text("Amount ≈ 0.3 ETH")
    dave.locator("#order-submit").click()
    for page in (carol, dave):
        expect(page.locator('#book tr.ask[data-price="2100"]')).to_be_visible()
        expect(page.locator('#book tr.bid[data-price="1990"]')).to_be_visible()
    expect(dave.locator("#order-available")).to_have_text("Available: 2403 USDT")
    shot(dave, "market")

    # Cancel one (Carol's), cancel all (Dave's): the books forget them, the funds come back.
    carol.get_by_role("button", name="Cancel order").click()
    expect(carol.get_by_text("No open orders.")).to_be_visible()
    dave.locator("#cancel-all").click()
    expect(dave.get_by_text("No open orders.")).to_be_visible()
    for page in (carol, dave):
        expect(page.locator("#book tr.level")).to_have_count(0)
    expect(dave.locator("#order-available")).to_have_text("Available: 3000 USDT")

    # Their fills, with fee and role; the cancelled order in the history.
    dave.goto(f"{base}/#/history")
    fill = dave.locator("#own-trades tbody tr").first
    expect(fill).to_contain_text("taker")
    expect(fill).to_contain_text("0.002 ETH")
    carol.goto(f"{base}/#/history")
    expect(carol.locator("#own-trades tbody tr").first).to_contain_text("maker")
    expect(carol.locator("#own-trades tbody tr").first).to_contain_text("2 USDT")
    expect(carol.locator("#order-history tbody tr").first).to_contain_text("cancelled")
    shot(carol, "history", full_page=True)

    # Dave withdraws 0.5 ETH and follows it to confirmed on the chain.
    dave.goto(f"{base}/#/wallet")
    dave.locator("#wallet-asset").select_option("ETH")
    dave.locator("#withdraw-address").fill(OUTSIDE)
    dave.locator("#withdraw-amount").fill("0.5")
    expect(dave.locator("#withdraw-total")).to_contain_text("0.501 ETH")
    dave.locator("#withdraw-password").fill(PASSWORD)
    dave.get_by_role("button", name="Withdraw ETH").click()
    expect(dave.locator("#withdraw-message")).to_contain_text("Withdrawal")
    confirmed = dave.locator('#withdrawals tr[data-state="confirmed"]')
    expect(confirmed).to_have_count(1)
    expect(confirmed.locator("code.hash")).to_have_attribute("title", TX_HASH)
    expect(dave.locator('#balances tr[data-asset="ETH"] .available')).to_have_text("0.497")
    shot(dave, "wallet-withdrawal", full_page=True)

    # API keys: the secret once, then the list; revoked.
    dave.goto(f"{base}/#/keys")
    dave.locator("#key-label").fill("my bot")
    dave.get_by_role("button", name="Create key").click()
    expect(dave.locator("#new-key-secret")).not_to_be_empty()
    expect(dave.locator("#keys tbody tr")).to_have_count(1)
    shot(dave, "keys")
    dave.get_by_role("button", name="Revoke my bot").click()
    expect(dave.get_by_text("No API keys.")).to_be_visible()

    # A session ended elsewhere (the refresh cookie spent by another logout): the next call
    # gets 401, the refresh fails, the page asks to log in again.
    cookie = next(c for c in carol_ctx.cookies() if c["name"] == "refresh_token")
    HttpClient(base).ok("POST", "/v1/auth/logout", {"refresh_token": cookie["value"]}, None, 204)
    carol.goto(f"{base}/#/wallet")
    expect(carol.locator("#login-title")).to_be_visible()
    expect(carol.locator("#banner")).to_contain_text("Log in again")
    shot(carol, "login-again")
    # Logging in goes back where the person was.
    carol.get_by_label("Email").fill("carol@example.com")
    carol.get_by_label("Password").fill(PASSWORD)
    carol.get_by_role("button", name="Log in").click()
    expect(carol.locator("#bal-title")).to_be_visible()

    assert not errors, errors
    carol_ctx.close()
    dave_ctx.close()


def test_phone_screen_and_dark_preference(exchange: LocalExchange, browser: Browser) -> None:
    errors: list[str] = []
    ctx = browser.new_context(
        viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True
    )
    ctx.set_default_timeout(WAIT_MS)
    page = watch(ctx.new_page(), errors)
    page.goto(f"{exchange.api}/#/market/{MARKET}")
    expect(page.locator("#order-form")).to_be_visible()
    expect(page.locator("#feed-status")).to_have_text("Live")
    # Nothing wider than the screen: the page does not scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 18, 23)"  # the dark palette
    shot(page, "phone-market-dark", full_page=True)
    assert not errors, errors
    ctx.close()


_COUNT_FORMS = """
window.formsDrawn = 0;
new MutationObserver((changes) => {
  for (const change of changes)
    for (const node of change.addedNodes) if (node.nodeName === "FORM") window.formsDrawn += 1;
}).observe(document, { childList: true, subtree: true });
"""


def test_a_page_opened_while_the_session_is_restored_is_drawn_once(
    exchange: LocalExchange, browser: Browser
) -> None:
    """A link followed while the page still restores the session (its refresh call under
    way) is drawn once, when that is done: a second draw would wipe a form already begun."""
    errors: list[str] = []
    ctx = new_context(browser)
    ctx.add_init_script(_COUNT_FORMS)
    page = watch(ctx.new_page(), errors)
    held: list[Route] = []
    page.route(
        "**/v1/auth/refresh", lambda route: held.append(route)
    )  # answered only when let go below
    page.goto(f"{exchange.api}/#/markets")
    while not held:
        page.wait_for_timeout(20)
    page.evaluate("window.location.hash = '#/login'")
    expect(page.locator("main")).to_contain_text("Loading")  # nothing drawn before the session
    held[0].continue_()
    page.get_by_label("Email").fill("early@example.com")  # drawn as the start-up's last step
    expect(page.get_by_label("Email")).to_have_value("early@example.com")
    assert page.evaluate("window.formsDrawn") == 1
    assert not errors, errors
    ctx.close()
