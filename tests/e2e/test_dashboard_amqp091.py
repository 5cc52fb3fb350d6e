"""Cross-plugin: the web console's Clients page lists a real AMQP 0.9.1 connection
(pika) beside the MQTT ones, shows its consumer as a subscription, and its
Disconnect button closes the connection (320 CONNECTION_FORCED at the client).

Debian's Chromium driven by Playwright (never a browser Playwright downloads);
skipped, saying why, without Chromium, Playwright or either plugin."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from fluxmq_core.testing.broker import BrokerThread
from tests.e2e._console import browser_page

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pika = pytest.importorskip("pika", reason="pika is not installed")
expect = sync_api.expect

WAIT = 10.0
TOKEN = "e2e-console-token"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerThread]:
    pytest.importorskip("fluxmq_dashboard", reason="the dashboard plugin is not installed")
    pytest.importorskip("fluxmq_amqp091", reason="the AMQP 0.9.1 plugin is not installed")
    from fluxmq_core.passwords import set_password

    pw = tmp_path_factory.mktemp("auth") / "passwd"
    set_password(pw, "alice", "rabbit-pw", iterations=1000)
    cfg = {
        "http": {"admin_token": TOKEN},
        "auth": {"anonymous": False, "password_file": str(pw)},
    }
    with BrokerThread(plugins=["amqp091", "dashboard"], config=cfg) as b:
        yield b


@pytest.fixture(scope="module")
def page(broker: BrokerThread) -> Iterator[Any]:
    with browser_page(WAIT) as p:
        origin = "http://{}:{}".format(*broker.address("http.bind"))
        p.goto(f"{origin}/ui/")
        p.evaluate(f"sessionStorage.setItem('fluxmq.admin_token', {TOKEN!r})")
        p.goto(f"{origin}/ui/#/clients")
        p.reload()  # the console reads the token when it starts
        p.wait_for_selector("main h1")
        yield p


def test_clients_page_shows_and_disconnects_a_pika_connection(
    page: Any, broker: BrokerThread
) -> None:
    conn = pika.BlockingConnection(
        pika.ConnectionParameters(
            "127.0.0.1",
            broker.port("amqp091.bind"),
            credentials=pika.PlainCredentials("alice", "rabbit-pw"),
            socket_timeout=WAIT,
        )
    )
    try:
        ch = conn.channel()
        ch.queue_declare("console-work")
        ch.basic_consume("console-work", lambda *a: None)
        # The protocol filter lists amqp091 once the connection is there.
        protocol = page.get_by_label("Protocol")
        expect(protocol.locator("option[value=amqp091]")).to_have_count(1)
        protocol.select_option("amqp091")
        rows = page.locator("tbody tr[data-client]")
        expect(rows).to_have_count(1)
        row = rows.first
        client_id = row.get_attribute("data-client")
        assert client_id and client_id.startswith("amqp091-")
        cells = row.locator("td")
        expect(cells.nth(0)).to_have_text("amqp091")  # protocol
        expect(cells.nth(1)).to_have_text("alice")  # user
        expect(cells.nth(2)).to_contain_text("127.0.0.1")  # remote
        expect(cells.nth(3)).to_contain_text("UTC")  # connected since
        expect(cells.nth(4)).to_have_text("1")  # one consumer = one subscription
        # The search box finds it by its id as well.
        protocol.select_option("")
        page.get_by_role("searchbox", name="Search").fill(client_id)
        expect(rows).to_have_count(1)
        row.get_by_role("button", name=client_id, exact=True).click()
        detail = page.get_by_role("region", name=f"Session {client_id}")
        expect(detail).to_contain_text("$queue/console-work")
        expect(detail).to_contain_text("0-9-1")
        # Disconnect, confirmed: the broker closes the connection with 320.
        row.get_by_role("button", name=f"Disconnect {client_id}").click()
        page.get_by_role("dialog", name="Disconnect client?").get_by_role(
            "button", name="Disconnect"
        ).click()
        expect(page.get_by_role("status")).to_contain_text(f"Disconnected {client_id}")
        deadline = time.monotonic() + WAIT
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            while time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.1)
        assert closed.value.reply_code == 320
        expect(rows).to_have_count(0)
    finally:
        if conn.is_open:
            conn.close()
