"""The operator's console in a real browser (docs/web.md): Debian's chromium driven by
Playwright, against the whole local exchange as ``make run`` starts it (its admin from
``.state/admin.json``, as the README's walkthrough uses it).

Erin, a user, sees no console and the admin API refuses her. The admin logs in, finds Erin by
email and sees her balances, halts ETH-USDT: Erin's order is refused with the halt's reason;
resumed, the same order is placed and shows in her lookup. The admin changes ETH's withdrawal
fee and sets USDT's review threshold; of Erin's two withdrawals above it, one is approved and
one rejected (refunded), as her lookup then shows. The books' audit shows balanced; a bogus
balance written straight into Postgres makes the books' audit, run from the console, fail, and
the failing run shows with its difference; the hot and gas wallets' balances show; the action
log lists the admin's actions. Two
commands reach the dead letters: a forged (unsigned) deposit the matcher refuses, shown with
its reason and discarded, and a genuine one Pub/Sub gave up on, re-driven and applied; the
action log shows both decisions. Erin's lookup lists her two live sessions; disabled, they are
gone, her session ends and her login is refused; enabled, she logs in again.
Screenshots go to tests/browser/artifacts/ (not committed).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.cloud import pubsub_v1  # type: ignore[attr-defined, unused-ignore]
from playwright.sync_api import Browser, Page, expect

from shared.config import PostgresConfig
from shared.db import connect
from shared.messages import Deposit, encode
from shared.producers import parse_keys, signature_attributes
from shared.pubsub import DELIVERY_COUNT_ATTR
from tests.integration.http_client import HttpClient
from tests.integration.test_readme import LocalExchange, local_exchange
from tests.integration.test_web import (
    MARKET,
    OUTSIDE,
    PASSWORD,
    WAIT_MS,
    browser,  # noqa: F401  (the fixture)
    new_context,
    shot,
    sign_up,
    state_env,
    watch,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ERIN = "erin@example.com"
T = TypeVar("T")


@pytest.fixture(scope="module")
def exchange() -> Iterator[LocalExchange]:
    workdir = Path(tempfile.mkdtemp(prefix="console-"))
    workdir.chmod(0o755)  # Postgres (the postgres user, when we are root) works in it
    try:
        with local_exchange(workdir) as ex:
            yield ex
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def admin_login(ex: LocalExchange) -> tuple[str, str]:
    stored = json.loads((ex.workdir / ".state" / "admin.json").read_text())
    return str(stored["email"]), str(stored["password"])


def log_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/#/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#logout")).to_be_visible()


def wait_for(check: Callable[[], T | None], seconds: float = WAIT_MS / 1000) -> T:
    """What ``check`` gives once it is truthy (the exchange applies commands asynchronously)."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "the exchange never got there"
        time.sleep(0.2)


def place_buy(page: Page) -> None:
    page.locator('button[data-side="buy"]').click()
    page.locator("#order-price").fill("1500")
    page.locator("#order-amount").fill("0.1")
    page.locator("#order-submit").click()


def test_admin_console(
    exchange: LocalExchange,
    browser: Browser,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = exchange.api
    http = HttpClient(base)
    errors: list[str] = []
    erin_ctx, admin_ctx = new_context(browser), new_context(browser)
    erin, admin = watch(erin_ctx.new_page(), errors), watch(admin_ctx.new_page(), errors)

    # Erin: no console for her, and the admin API refuses her token.
    sign_up(erin, base, ERIN)
    expect(erin.locator('nav a[href="#/console"]')).to_have_count(0)
    erin.goto(f"{base}/#/console/users")
    expect(erin.locator("main")).to_contain_text("This page is for the exchange's operators.")
    expect(erin.locator("#user-lookup")).to_have_count(0)
    status, answer = http.call("POST", "/v1/auth/login", {"email": ERIN, "password": PASSWORD})
    assert status == 200, answer
    erin_token = answer["access_token"]
    status, answer = http.call("GET", "/v1/admin/audit", token=erin_token)
    assert (status, answer["error"]["code"]) == (403, "forbidden")

    # The admin credits her (as the README's walkthrough does) and finds her with her balance.
    email, password = admin_login(exchange)
    status, answer = http.call("POST", "/v1/auth/login", {"email": email, "password": password})
    assert status == 200, answer
    admin_token = answer["access_token"]
    status, erin_user = http.call("GET", f"/v1/admin/users/{ERIN}", token=admin_token)
    assert status == 200, erin_user
    deposit = {"user_id": erin_user["user_id"], "asset": "USDT", "amount": "5000", "ref": "c-1"}
    status, answer = http.call("POST", "/v1/admin/deposits", deposit, token=admin_token)
    assert status in (201, 202), answer  # 202: the matcher had not answered yet
    wait_for(lambda: http.call("GET", "/v1/balances", token=erin_token)[1].get("USDT"))

    log_in(admin, base, email, password)
    admin.locator('nav a[href="#/console"]').click()
    admin.locator("#user-lookup").fill(ERIN)
    admin.get_by_role("button", name="Look up").click()
    expect(admin.locator("#user-email")).to_have_text(ERIN)
    expect(admin.locator("#user-id")).to_have_text(erin_user["user_id"])
    expect(admin.locator("#user-role")).to_have_text("user")
    usdt = admin.locator('#user-balances tr[data-asset="USDT"]')
    expect(usdt.locator("td").nth(1)).to_have_text("5000")
    expect(usdt.locator("td").nth(2)).to_have_text("0")
    # Her sessions: the page's login and the one above.
    expect(admin.locator("#user-sessions tbody tr")).to_have_count(2)
    shot(admin, "console-user", full_page=True)

    # Halting the market: Erin's order is refused with the reason; resumed, it is placed.
    admin.get_by_role("link", name="Markets").last.click()
    row = admin.locator(f'#admin-markets tr[data-market="{MARKET}"]')
    expect(row).to_have_attribute("data-status", "open")
    admin.get_by_role("button", name=f"Halt {MARKET}").click()  # the confirm is accepted
    expect(admin.locator("#market-message")).to_have_text(f"{MARKET} halted.")
    expect(row).to_have_attribute("data-status", "halted")
    shot(admin, "console-markets", full_page=True)

    erin.goto(f"{base}/#/market/{MARKET}")
    expect(erin.locator("#order-form")).to_be_visible()
    place_buy(erin)
    expect(erin.locator("#order-message")).to_contain_text("Trading in this market is halted.")
    shot(erin, "console-halted-order")

    admin.get_by_role("button", name=f"Resume {MARKET}").click()
    expect(admin.locator("#market-message")).to_have_text(f"{MARKET} resumed.")
    expect(row).to_have_attribute("data-status", "open")
    place_buy(erin)
    expect(erin.locator("#order-message")).to_contain_text("open")

    # Her order's hold shows in the lookup (reached by its address).
    admin.goto(f"{base}/#/console/users/{ERIN}")
    expect(usdt.locator("td").nth(2)).to_have_text("150")
    placed = admin.locator("#user-orders tbody tr")
    expect(placed).to_have_count(1)
    expect(placed).to_contain_text("1500")
    expect(admin.locator("#user-deposits tbody tr")).to_contain_text("c-1")

    # An asset's chain settings: ETH's withdrawal fee changed, as GET /v1/assets then says.
    admin.get_by_role("link", name="Assets").click()
    admin.get_by_label("ETH withdrawal fee").fill("0.002")
    admin.get_by_role("button", name="Save ETH").click()
    expect(admin.locator("#asset-message")).to_have_text("ETH: rules saved.")
    expect(admin.get_by_label("ETH withdrawal fee")).to_have_value("0.002")
    status, answer = http.call("GET", "/v1/assets")
    eth = next(a for a in answer["assets"] if a["asset"] == "ETH")
    assert (status, eth["chain"]["withdrawal_fee"]) == (200, "0.002")
    shot(admin, "console-assets", full_page=True)

    # Withdrawal review: above USDT's threshold (set here) Erin's withdrawals wait for the admin.
    admin.get_by_label("USDT withdrawal review threshold").fill("100")
    admin.get_by_role("button", name="Save USDT").click()
    expect(admin.locator("#asset-message")).to_have_text("USDT: rules saved.")
    for amount in ("300", "200"):
        body = {"asset": "USDT", "amount": amount, "address": OUTSIDE}
        status, answer = http.call("POST", "/v1/withdrawals", body, token=erin_token)
        assert status in (201, 202), answer  # 202: the matcher had not answered yet

    def both_in_review() -> list[str]:
        """Erin's two withdrawals in review, the larger first; [] until both are."""
        listed = http.call("GET", "/v1/withdrawals", token=erin_token)[1]["withdrawals"]
        ids = [w["id"] for w in sorted(listed, key=lambda w: -float(w["amount"]))
               if w["state"] == "review"]  # fmt: skip
        return ids if len(ids) == 2 else []

    waiting = wait_for(both_in_review)
    admin.get_by_role("link", name="Withdrawal review").click()
    rows = admin.locator("#review-withdrawals tbody tr")
    expect(rows).to_have_count(2)
    big, other = (admin.locator(f'#review-withdrawals tr[data-withdrawal="{w}"]') for w in waiting)
    expect(big).to_contain_text("300 USDT")
    expect(big.get_by_role("button", name="Approve")).to_be_enabled()  # held by the matcher
    shot(admin, "console-review", full_page=True)
    big.get_by_role("button", name="Approve").click()
    expect(admin.locator("#review-message")).to_have_text(
        f"300 USDT to {OUTSIDE}: approved (requested)."
    )
    other.get_by_role("button", name="Reject").click()
    # Refunded once the matcher answers (the sender finishes it if that is late).
    expect(admin.locator("#review-message")).to_contain_text(f"200 USDT to {OUTSIDE}: rejected")
    expect(admin.locator("#review-withdrawals")).to_have_count(0)
    expect(admin.locator("#console-withdrawals")).to_contain_text(
        "No withdrawal is waiting for review."
    )

    def refunded() -> dict[str, Any] | None:
        w: dict[str, Any] = http.call("GET", f"/v1/withdrawals/{waiting[1]}", token=erin_token)[1]
        return w if w["state"] == "refunded" else None

    assert wait_for(refunded)["error"] == "rejected_in_review"
    admin.goto(f"{base}/#/console/users/{ERIN}")
    expect(admin.locator("#user-withdrawals tbody tr")).to_have_count(2)
    rejected = admin.locator(f'#user-withdrawals tr[data-withdrawal="{waiting[1]}"]')
    expect(rejected).to_have_attribute("data-state", "refunded")
    shot(admin, "console-user-after", full_page=True)

    # The books' audit: balanced, USDT's deposits counted.
    admin.get_by_role("link", name="Audit").click()
    expect(admin.locator("#audit-verdict")).to_have_attribute("data-ok", "true")
    expect(admin.locator('#audit-assets tr[data-asset="USDT"] td').nth(3)).to_have_text("5000")
    # The hot and gas wallets' balances, as the scheduled on-chain audit read them.
    for wallet, asset in (("hot", "ETH"), ("hot", "USDT"), ("gas", "ETH")):
        held = admin.locator(f'#wallets tr[data-wallet="{wallet}"][data-asset="{asset}"] td')
        expect(held.nth(3)).to_have_text(re.compile(r"^\d+(\.\d+)?$"))
    hot_eth = admin.locator('#wallets tr[data-wallet="hot"][data-asset="ETH"] td').nth(3)
    assert Decimal(hot_eth.inner_text()) > 0  # the operator funded it
    shot(admin, "console-audit", full_page=True)

    # A unit from nowhere, straight into Postgres: the books' audit, run from the console,
    # fails and shows the difference; the action log has the run (and the earlier halt).
    env = state_env(exchange)
    db = connect(PostgresConfig.load(env))
    try:
        db.run(
            "INSERT INTO balances (user_id, asset, available, frozen, seq)"
            " VALUES ('bogus-balance', 'USDT', 42000000, 0, 0)"
        )
        admin.get_by_role("button", name="Run the books' audit now").click()
        expect(admin.locator("#audit-run-message")).to_contain_text("1 difference.")
        failing = admin.locator('#audit-results tr[data-kind="books"][data-ok="false"]').first
        expect(failing).to_contain_text("Mismatch")
        failing.locator("summary").click()
        expect(failing.locator("table")).to_contain_text("conservation")
        expect(failing.locator("table")).to_contain_text("USDT")
        shot(admin, "console-audit-failing", full_page=True)
    finally:
        db.run("DELETE FROM balances WHERE user_id = 'bogus-balance'")
        db.close()
    logged = admin.locator("#admin-actions")
    expect(logged.locator('tr[data-action="POST /v1/admin/audits/books"]')).to_have_count(1)
    expect(logged.locator(f'tr[data-action="PATCH /v1/admin/markets/{MARKET}"]')).to_have_count(2)

    # Dead letters: a forged deposit the matcher refuses, and a genuine one Pub/Sub gave up on
    # (as its dead-letter policy forwards it: signed, with its delivery count).
    erin_id = erin_user["user_id"]
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", env["PUBSUB_EMULATOR_HOST"])
    project = env["GOOGLE_CLOUD_PROJECT"]
    raw = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    forged = encode(Deposit(id="forged-1", user=erin_id, asset="USDT", amount=10**12, ref="f-1"))
    raw.publish(raw.topic_path(project, "commands"), forged, ordering_key=erin_id).result(30)
    admin_key = parse_keys((exchange.workdir / ".state" / "command-keys.json").read_text())[0]
    lost = encode(Deposit(id="lost-1", user=erin_id, asset="USDT", amount=25 * 10**6, ref="l-1"))
    raw.publish(
        raw.topic_path(project, "commands-dead-letter"), lost, ordering_key=erin_id,
        **signature_attributes("admin", admin_key["admin"], lost, erin_id),
        **{DELIVERY_COUNT_ATTR: "10"},
    ).result(30)  # fmt: skip
    raw.stop()

    def dead_lettered() -> bool:
        status, answer = http.call("GET", "/v1/admin/dead-letters", token=admin_token)
        assert status == 200, answer
        return {"forged-1", "lost-1"} <= {d["command_id"] for d in answer["dead_letters"]}

    wait_for(dead_lettered)
    usdt_before = http.call("GET", "/v1/balances", token=erin_token)[1]["USDT"]["available"]
    admin.get_by_role("link", name="Dead letters").click()
    refused = admin.locator('#dead-letters tr[data-command="forged-1"]')
    expect(refused).to_have_attribute("data-reason", "unsigned")
    expect(refused).to_contain_text("not signed")
    expect(refused.get_by_role("button", name="Re-drive")).to_be_disabled()
    genuine = admin.locator('#dead-letters tr[data-command="lost-1"]')
    expect(genuine).to_have_attribute("data-reason", "delivery_attempts")
    expect(genuine).to_contain_text("10 deliveries")
    shot(admin, "console-dead-letters", full_page=True)
    refused.get_by_role("button", name="Discard").click()  # the confirm is accepted
    expect(admin.locator("#dead-letter-message")).to_contain_text("forged-1: discarded")
    genuine.get_by_role("button", name="Re-drive").click()
    expect(admin.locator("#dead-letter-message")).to_contain_text("lost-1: re-driven")
    expect(admin.locator("#dead-letters")).to_have_count(0)  # none waits any more
    wait_for(
        lambda: (
            http.call("GET", "/v1/balances", token=erin_token)[1]["USDT"]["available"]
            == str(Decimal(usdt_before) + 25)
        )
    )
    admin.get_by_role("link", name="Audit").click()
    for verb in ("discard", "redrive"):
        action = admin.locator(f'#admin-actions tr[data-action$="/{verb}"]')
        expect(action).to_have_count(1)
        expect(action).to_contain_text("/v1/admin/dead-letters/")

    # Disabling Erin ends her session and refuses her login, in words; enabled, she is back.
    admin.goto(f"{base}/#/console/users/{ERIN}")
    admin.get_by_role("button", name="Disable user").click()  # the confirm is accepted
    expect(admin.locator("#user-access")).to_have_text("Disabled")
    expect(admin.locator("#access-message")).to_contain_text("sessions ended")
    expect(admin.locator("#user-sessions-box")).to_contain_text("No live session.")
    shot(admin, "console-user-disabled", full_page=True)
    erin.reload()
    # the page has restored what it could (no session) and drawn itself: signed out
    expect(erin.get_by_role("navigation").get_by_role("link", name="Log in")).to_be_visible()
    expect(erin.locator("#logout")).to_have_count(0)
    erin.goto(f"{base}/#/login")
    erin.get_by_label("Email").fill(ERIN)
    erin.get_by_label("Password").fill(PASSWORD)
    erin.get_by_role("button", name="Log in").click()
    expect(erin.locator("main")).to_contain_text("This account is disabled.")
    admin.get_by_role("button", name="Enable user").click()
    expect(admin.locator("#user-access")).to_have_text("Active")
    log_in(erin, base, ERIN, PASSWORD)

    assert not errors, errors
    erin_ctx.close()
    admin_ctx.close()
