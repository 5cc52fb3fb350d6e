"""The console in headless Chromium against a real broker with real MQTT traffic:
every page shows live numbers, the plot moves, and the actions (disconnect, purge,
create, delete, publish, live tail) act on real clients and queues."""

from __future__ import annotations

import importlib.metadata
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from fluxmq_core.testing.broker import BrokerThread

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

WAIT = 10.0
TOKEN = "console-s3cret"
MS = WAIT * 1000


def _installed(name: str) -> bool:
    return any(ep.name == name for ep in importlib.metadata.entry_points(group="fluxmq"))


HAS_AMQP = _installed("amqp091")


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerThread]:
    plugins = ["mqtt", "dashboard"] + (["amqp091"] if HAS_AMQP else [])
    queues = {
        "orders": {"type": "classic"},
        # Two messages at most; what overflow drops goes to $dlq/capped.
        "capped": {
            "type": "classic",
            "max_depth": 2,
            "overflow": "drop-oldest",
            "dlq_overflow": True,
        },
    }
    cfg = {"http": {"admin_token": TOKEN}, "queues": queues}
    with BrokerThread(plugins=plugins, config=cfg) as b:
        yield b


@pytest.fixture(scope="module")
def traffic(broker: BrokerThread, mqtt_clients: Any) -> Iterator[dict[str, Any]]:
    """A subscriber on sensors/# and a publisher sending to it every 50 ms (bounded:
    at most 6000 messages, stopped at the end of the module)."""
    got: list[bytes] = []
    sub = mqtt_clients(broker, "sensor-dash")
    sub.on_message = lambda c, u, m: got.append(m.payload)
    sub.subscribe("sensors/#", qos=0)
    pub = mqtt_clients(broker, "sensor-feed")
    stop = threading.Event()

    def run() -> None:
        for i in range(6000):
            if stop.wait(0.05):
                return
            pub.publish(f"sensors/s{i % 5}", f"reading {i}".encode())

    t = threading.Thread(target=run, name="dashboard-traffic", daemon=True)
    t.start()
    deadline = time.monotonic() + WAIT
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    assert got, "the traffic does not flow"
    yield {"sub": sub, "pub": pub, "got": got}
    stop.set()
    t.join(WAIT)


@pytest.fixture(scope="module")
def page(broker: BrokerThread, browser_context: Any, traffic: Any) -> Iterator[Any]:
    """One tab for the module; every request it makes is recorded (none may leave
    the broker's origin)."""
    p = browser_context.new_page()
    origin = "http://{}:{}".format(*broker.address("http.bind"))
    p.requests = []  # type: ignore[attr-defined]
    p.errors = []  # type: ignore[attr-defined]
    p.on("request", lambda r: p.requests.append(r.url))
    p.on("pageerror", lambda e: p.errors.append(str(e)))
    p.origin = origin  # type: ignore[attr-defined]
    yield p
    p.close()


def go(page: Any, route: str) -> None:
    """Open a page of the console, with the token in the tab's session storage (as
    the first test leaves it; set here too so any test can run alone)."""
    page.goto(f"{page.origin}/ui/#/{route}")
    if page.evaluate("sessionStorage.getItem('fluxmq.admin_token')") != TOKEN:
        page.evaluate(f"sessionStorage.setItem('fluxmq.admin_token', {TOKEN!r})")
        page.reload()
    page.wait_for_selector("main h1")


def wait_for(cond: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_wrong_token_shows_a_clear_error_then_the_right_one_opens(
    screenshot: Any, page: Any
) -> None:
    resp = page.goto(page.origin + "/")
    assert page.url == page.origin + "/ui/"  # "/" redirects to the console
    assert "default-src 'self'" in resp.headers["content-security-policy"]
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("needs its admin token")
    page.get_by_label("Token", exact=True).fill("not-the-token")
    page.get_by_role("button", name="Use token").click()
    expect(alert).to_contain_text("The admin token was refused (401")
    expect(alert).to_contain_text("missing or wrong bearer token")
    screenshot(page, "dashboard-token")
    page.get_by_label("Token", exact=True).fill(TOKEN)
    page.get_by_role("button", name="Use token").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    assert page.evaluate("sessionStorage.getItem('fluxmq.admin_token')") == TOKEN


def test_overview_shows_live_numbers_and_the_plot_moves(
    screenshot: Any, page: Any, broker: BrokerThread
) -> None:
    go(page, "overview")
    connections = page.locator("[data-tile=connections]")
    expect(connections).to_have_text(str(broker.context.stats.clients_connected))
    # A positive rate: the traffic of the `traffic` fixture, seen by two samples.
    positive = re.compile(r"^(?!0(\.0)?$)[\d,]+(\.\d)?$")
    expect(page.locator("[data-tile=in-rate]")).to_have_text(positive)
    expect(page.locator("[data-tile=out-rate]")).to_have_text(positive)
    expect(page.locator("[data-tile=memory]")).to_contain_text("MiB")
    expect(page.locator("tr[data-protocol=mqtt] td").first).not_to_have_text("0")
    chart = page.locator("[data-chart=rates]")
    expect(chart.locator("canvas")).to_have_count(1)
    before = int(chart.get_attribute("data-samples"))
    pixels = chart.locator("canvas").screenshot()
    wait_for(lambda: int(chart.get_attribute("data-samples")) >= before + 2, "two more samples")
    wait_for(lambda: chart.locator("canvas").screenshot() != pixels, "the plot to change")
    screenshot(page, "dashboard-overview")


def test_clients_search_detail_and_disconnect_a_real_client(
    screenshot: Any, page: Any, broker: BrokerThread, mqtt_clients: Any
) -> None:
    gone = threading.Event()
    victim = mqtt_clients(broker, "kick-me-42")
    victim.on_disconnect = lambda *a: gone.set()
    victim.subscribe("kick/#")
    go(page, "clients")
    page.get_by_role("searchbox", name="Search").fill("kick-me")
    rows = page.locator("tbody tr[data-client]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-client", "kick-me-42")
    expect(rows.first).to_contain_text("UTC")  # connected since
    rows.first.get_by_role("button", name="kick-me-42", exact=True).click()
    detail = page.get_by_role("region", name="Session kick-me-42")
    expect(detail).to_contain_text("kick/#")
    expect(detail).to_contain_text("5.0")
    screenshot(page, "dashboard-clients")
    page.get_by_role("button", name="Disconnect kick-me-42").first.click()
    dialog = page.get_by_role("dialog", name="Disconnect client?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()  # cancel: nothing happens
    expect(dialog).to_be_hidden()
    assert broker.context.sessions.get("kick-me-42")[0].connected
    page.get_by_role("button", name="Disconnect kick-me-42").first.click()
    dialog.get_by_role("button", name="Disconnect").click()
    assert gone.wait(WAIT), "the paho client was not disconnected"
    expect(page.get_by_role("status")).to_contain_text("Disconnected kick-me-42")


def test_clients_paging(page: Any, broker: BrokerThread, mqtt_clients: Any) -> None:
    for i in range(27):
        mqtt_clients(broker, f"pager-{i:02d}")
    go(page, "clients")
    page.get_by_role("searchbox", name="Search").fill("pager-")
    pager = page.get_by_role("navigation", name="Sessions pages")
    expect(pager).to_contain_text("1–25 of 27")
    expect(page.locator("tbody tr[data-client]")).to_have_count(25)
    pager.get_by_role("button", name="Next").click()
    expect(pager).to_contain_text("26–27 of 27")
    rows = page.locator("tbody tr[data-client]")
    expect(rows).to_have_count(2)
    expect(rows.last).to_have_attribute("data-client", "pager-26")
    expect(pager.get_by_role("button", name="Next")).to_be_disabled()
    pager.get_by_role("button", name="Previous").click()
    expect(pager).to_contain_text("1–25 of 27")


def test_subscriptions_by_filter_and_the_clients_of_one(screenshot: Any, page: Any) -> None:
    go(page, "subscriptions")
    row = page.locator("tr[data-filter='sensors/#']")
    expect(row.locator("td").first).to_have_text("1")
    row.get_by_role("button").click()
    holders = page.get_by_role("region", name="Clients of sensors/#")
    expect(holders).to_contain_text("sensor-dash")
    screenshot(page, "dashboard-subscriptions")


def test_subscriptions_search_box_narrows_the_filters(
    page: Any, broker: BrokerThread, mqtt_clients: Any
) -> None:
    c = mqtt_clients(broker, "searcher")
    subscribed = threading.Event()
    c.on_subscribe = lambda *a: subscribed.set()
    c.subscribe([("findme/alpha/+", 1), ("elsewhere/beta", 0)])
    assert subscribed.wait(WAIT)
    go(page, "subscriptions")
    rows = page.locator("tbody tr[data-filter]")
    expect(page.locator("tr[data-filter='elsewhere/beta']")).to_have_count(1)
    page.get_by_role("searchbox", name="Filter contains").fill("alpha")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-filter", "findme/alpha/+")
    expect(rows.first.locator("td").first).to_have_text("1")
    page.get_by_role("searchbox", name="Filter contains").fill("no-such-filter")
    expect(rows).to_have_count(0)
    page.get_by_role("searchbox", name="Filter contains").fill("")
    expect(page.locator("tr[data-filter='sensors/#']")).to_have_count(1)


def test_clients_state_and_protocol_filters(page: Any, broker: BrokerThread) -> None:
    """An MQTT 5 session with an expiry outlives its connection: "offline sessions"
    lists it (and no connected client), "connected" does not."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    away = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="away-77", protocol=mqtt.MQTTv5)
    ready = threading.Event()
    away.on_connect = lambda *a: ready.set()
    away.on_subscribe = lambda *a: ready.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    away.connect(*broker.address("mqtt.tcp"), clean_start=False, properties=props)
    away.loop_start()
    try:
        assert ready.wait(WAIT)
        ready.clear()
        away.subscribe("away/#", qos=1)
        assert ready.wait(WAIT)
    finally:
        away.disconnect()
        away.loop_stop()
    sessions = broker.context.sessions
    wait_for(lambda: not sessions.get("away-77")[0].connected, "away-77 to go offline")
    go(page, "clients")
    rows = page.locator("tbody tr[data-client]")
    state = page.get_by_label("State")
    state.select_option(label="offline sessions")
    expect(page.locator("tr[data-client=away-77]")).to_have_count(1)
    expect(page.locator("tr[data-client=sensor-dash]")).to_have_count(0)
    since = page.locator("tbody tr[data-client] td:nth-of-type(4)")  # "Connected since"
    expect(since.filter(has_not_text="offline")).to_have_count(0)
    expect(page.locator("tr[data-client=away-77] td").nth(4)).to_have_text("1")  # away/#
    expect(page.get_by_role("button", name="Disconnect away-77")).to_have_count(0)
    state.select_option(label="connected")
    expect(rows.first.locator("td").nth(3)).to_contain_text("UTC")
    expect(since.filter(has_not_text="UTC")).to_have_count(0)
    search = page.get_by_role("searchbox", name="Search")
    search.fill("away-77")
    expect(rows).to_have_count(0)  # connected only: the offline session is not listed
    state.select_option(label="all")
    expect(rows).to_have_count(1)
    page.get_by_label("Protocol").select_option("mqtt")
    expect(page.locator("tr[data-client=away-77]")).to_have_count(1)
    page.get_by_label("Protocol").select_option("")
    search.fill("")


def test_queues_depth_peek_purge_create_delete(
    screenshot: Any, page: Any, broker: BrokerThread, mqtt_clients: Any
) -> None:
    pub = mqtt_clients(broker, "order-feed")
    for i in range(7):
        pub.publish("$queue/orders/new", f"order {i}".encode(), qos=1).wait_for_publish(WAIT)
    qm = broker.context.queues
    wait_for(lambda: broker.call_soon(qm.info, "orders").depth == 7, "7 orders stored")
    go(page, "queues")
    row = page.locator("tr[data-queue=orders]")
    expect(row.locator("[data-depth]")).to_have_text("7")
    row.get_by_role("link", name="orders").click()
    detail = page.get_by_role("region", name="Queue orders")
    expect(detail).to_contain_text("classic")
    detail.get_by_role("button", name="Peek newest 10").click()
    newest = detail.locator("tr[data-offset]").first
    expect(newest).to_contain_text("order 6")
    screenshot(page, "dashboard-queues")
    detail.get_by_role("button", name="Purge").click()
    page.get_by_role("dialog", name="Purge queue?").get_by_role("button", name="Purge").click()
    expect(page.get_by_role("status")).to_contain_text("Purged 7 message(s) from orders")
    assert broker.call_soon(qm.info, "orders").depth == 0
    expect(row.locator("[data-depth]")).to_have_text("0")
    # Create, then delete (confirmed), a queue through the form.
    page.get_by_label("New queue name").fill("made-in-ui")
    page.get_by_label("Type").select_option("stream")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("status")).to_contain_text("Queue made-in-ui declared (stream)")
    assert broker.call_soon(qm.info, "made-in-ui").type == "stream"
    page.locator("tr[data-queue=made-in-ui]").get_by_role("link").click()
    page.get_by_role("region", name="Queue made-in-ui").get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name="Delete queue?").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text("Deleted queue made-in-ui")
    assert broker.call_soon(qm.get, "made-in-ui") is None
    expect(page.locator("tr[data-queue=made-in-ui]")).to_have_count(0)


def test_dead_letters_and_consumer_groups(
    page: Any, broker: BrokerThread, mqtt_clients: Any
) -> None:
    pub = mqtt_clients(broker, "capped-feed")
    for i in range(5):
        pub.publish("$queue/capped/x", f"capped {i}".encode(), qos=1).wait_for_publish(WAIT)
    qm = broker.context.queues

    def dead() -> int:
        return int(
            broker.call_soon(lambda: qm.info("$dlq/capped").depth if qm.get("$dlq/capped") else 0)
        )

    wait_for(lambda: dead() == 3, "3 dead letters")
    go(page, "queues")
    row = page.locator("tr[data-queue=capped]")
    expect(row.locator("[data-depth]")).to_have_text("2")
    expect(row.locator("td").last).to_have_text("3")
    row.get_by_role("link", name="capped").click()
    detail = page.get_by_role("region", name="Queue capped")
    expect(detail).to_contain_text("Dead letters3")
    got: list[bytes] = []
    consumer = mqtt_clients(broker, "capped-worker")
    consumer.on_message = lambda c, u, m: got.append(m.payload)
    consumer.subscribe("$queue/capped/#", qos=1)
    wait_for(lambda: len(got) == 2, "the consumer to get both messages")
    group = detail.locator("tr[data-group]")
    expect(group).to_have_count(1)
    expect(group.locator("td").first).to_have_text("1")  # one consumer
    detail.get_by_role("link", name="Open the dead-letter queue $dlq/capped").click()
    dlq = page.get_by_role("region", name="Queue $dlq/capped")
    expect(dlq).to_contain_text("Depth3")
    dlq.get_by_role("button", name="Peek newest 10").click()
    expect(dlq.locator("tr[data-offset]")).to_have_count(3)
    expect(dlq.locator("tr[data-offset]").first).to_contain_text("capped 2")


def test_a_groups_lag_and_pending_follow_a_consumer_that_acks_late(
    page: Any, broker: BrokerThread, mqtt_clients: Any
) -> None:
    """A paho consumer with manual acks holds 3 deliveries: the group shows lag 3 and
    3 pending (PEL); once it acks them both drop to 0."""
    pub = mqtt_clients(broker, "held-feed")
    for i in range(3):
        pub.publish("$queue/held/x", f"held {i}".encode(), qos=1).wait_for_publish(WAIT)
    got: list[mqtt.MQTTMessage] = []
    worker = mqtt_clients(broker, "held-worker", manual_ack=True)
    worker.on_message = lambda c, u, m: got.append(m)
    worker.subscribe("$queue/held/#", qos=1)
    wait_for(lambda: len(got) == 3, "the consumer to get 3 messages")
    go(page, "queues")
    page.locator("tr[data-queue=held]").get_by_role("link", name="held").click()
    group = page.get_by_role("region", name="Queue held").locator("tr[data-group]")
    expect(group).to_have_count(1)
    cells = group.locator("td")
    expect(cells.nth(0)).to_have_text("1")  # consumers
    expect(cells.nth(1)).to_have_text("3")  # lag
    expect(cells.nth(2)).to_have_text("3")  # pending (PEL)
    for m in got:
        worker.ack(m.mid, m.qos)
    expect(cells.nth(1)).to_have_text("0")
    expect(cells.nth(2)).to_have_text("0")


def test_live_tail_shows_mqtt_messages_hex_pause_and_a_bounded_buffer(
    screenshot: Any, page: Any, broker: BrokerThread, traffic: Any
) -> None:
    pub = traffic["pub"]
    go(page, "tail")
    page.get_by_label("Topic filter").fill("tail/#")
    page.get_by_role("button", name="Start").click()
    status = page.locator("main p.muted[role=status]")
    expect(status).to_contain_text("streaming tail/#")
    pub.publish("tail/hello", b"hello tail", qos=1).wait_for_publish(WAIT)
    row = page.locator("tr[data-topic='tail/hello']")
    expect(row).to_contain_text("hello tail")
    page.get_by_label("Hex").check()
    expect(row).to_contain_text("68 65 6c 6c 6f 20 74 61 69 6c")
    page.get_by_label("Hex").uncheck()
    screenshot(page, "dashboard-tail")
    page.get_by_role("button", name="Pause").click()
    pub.publish("tail/held", b"while paused", qos=1).wait_for_publish(WAIT)
    resume = page.get_by_role("button", name=re.compile(r"Resume \(1 held\)"))
    expect(resume).to_be_visible()
    expect(page.locator("tr[data-topic='tail/held']")).to_have_count(0)
    resume.click()
    expect(page.locator("tr[data-topic='tail/held']")).to_contain_text("while paused")
    # The buffer keeps the newest 500.
    for i in range(520):
        pub.publish("tail/flood", f"f{i}".encode())
    pub.publish("tail/last", b"last", qos=1).wait_for_publish(WAIT)
    expect(page.locator("tr[data-topic='tail/last']")).to_have_count(1)
    expect(status).to_contain_text("showing 500 of at most 500")
    page.get_by_role("button", name="Stop").click()
    expect(status).to_contain_text("stopped")


@pytest.mark.skipif(not HAS_AMQP, reason="the amqp091 plugin is not installed")
def test_live_tail_shows_a_message_published_over_amqp(page: Any, broker: BrokerThread) -> None:
    pika = pytest.importorskip("pika")
    go(page, "tail")
    page.get_by_label("Topic filter").fill("tail/#")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("main p.muted[role=status]")).to_contain_text("streaming tail/#")
    conn = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", broker.port("amqp091.bind"), socket_timeout=WAIT)
    )
    try:
        conn.channel().basic_publish("amq.topic", "tail.pika", b"from pika")
        expect(page.locator("tr[data-topic='tail/pika']")).to_contain_text("from pika")
    finally:
        conn.close()
    page.get_by_role("button", name="Stop").click()


def test_cluster_page_shows_this_node_and_its_sessions(
    screenshot: Any, page: Any, broker: BrokerThread
) -> None:
    go(page, "cluster")
    node = page.locator(f"tr[data-node='{broker.context.node_id}']")
    expect(node).to_contain_text("alive")
    cluster = broker.context.cluster

    def same_count() -> bool:
        sessions = broker.call_soon(lambda: cluster.status()["nodes"][0]["sessions"])
        return node.locator("[data-sessions]").inner_text() == str(sessions)

    wait_for(same_count, "the page to show the node's session count")
    expect(page.get_by_text("Single node")).to_be_visible()
    screenshot(page, "dashboard-cluster")


def test_publish_form_reaches_a_real_subscriber(
    screenshot: Any, page: Any, broker: BrokerThread, mqtt_clients: Any
) -> None:
    got: list[mqtt.MQTTMessage] = []
    sub = mqtt_clients(broker, "console-listener")
    sub.on_message = lambda c, u, m: got.append(m)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe("console/#", qos=1)
    assert subscribed.wait(WAIT)
    go(page, "publish")
    page.get_by_label("Topic").fill("console/test")
    page.get_by_label("Payload", exact=True).fill("from the browser")
    page.get_by_label("QoS").select_option("1")
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status")).to_contain_text("Published to console/test")
    wait_for(lambda: bool(got), "the subscriber to get the message")
    assert got[0].topic == "console/test" and got[0].payload == b"from the browser"
    assert got[0].qos == 1
    screenshot(page, "dashboard-publish")
    # Retain, with a base64 payload: kept by the broker for later subscribers.
    page.get_by_label("Topic").fill("console/kept")
    page.get_by_label("Payload", exact=True).fill("AAH/")
    page.get_by_label("base64").check()
    page.get_by_label("Retain").check()
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status")).to_contain_text("Published to console/kept")
    wait_for(lambda: len(got) == 2, "the subscriber to get the retained message")
    kept = broker.call_soon(broker.context.router.get_retained, "console/kept")
    assert kept is not None and kept.payload == b"\x00\x01\xff"


def test_keyboard_navigation(page: Any) -> None:
    go(page, "overview")
    expect(page.get_by_role("heading", level=1)).to_be_focused()  # focus follows the page
    skip = page.get_by_role("link", name="Skip to content")
    skip.focus()  # the first stop of the tab order
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    skip.focus()
    for _ in range(6):  # then the navigation: Overview, Clients, Subscriptions, Queues
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Queues":
            break
    expect(page.get_by_role("link", name="Queues")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Queues")
    expect(page.get_by_role("heading", level=1)).to_be_focused()
    # Tab reaches the create form; Escape closes a confirmation without acting.
    page.get_by_label("New queue name").focus()
    page.keyboard.type("kbd-queue")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Queue kbd-queue declared")
    page.locator("tr[data-queue=kbd-queue]").get_by_role("link").focus()
    page.keyboard.press("Enter")
    delete = page.get_by_role("region", name="Queue kbd-queue").get_by_role("button", name="Delete")
    delete.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Delete queue?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("tr[data-queue=kbd-queue]")).to_have_count(1)


PAGES = ["overview", "clients", "subscriptions", "queues", "tail", "cluster", "publish"]


def test_phone_width(screenshot: Any, page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        go(page, "overview")
        expect(page.locator("[data-tile=connections]")).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways at phone width ({width}px)"
        screenshot(page, "dashboard-phone", full_page=False)
        # Every other page too: wide tables scroll inside their card, not the page.
        for route in PAGES[1:]:
            go(page, route)
            page.wait_for_load_state("networkidle")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"#/{route} scrolls sideways at phone width ({width}px)"
            nav = page.get_by_role("link", name="Queues")
            expect(nav).to_be_visible()  # the navigation stays reachable
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


# Every form control and button on a page has an accessible name (a <label>, an
# aria-label or aria-labelledby, or its own text), and every table has a name.
UNNAMED = """() => {
  const named = (el) => (el.labels && el.labels.length) || el.getAttribute('aria-label')
    || el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent.trim())
    || el.getAttribute('title');
  const bad = [];
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
    if (!named(el)) bad.push(el.outerHTML.slice(0, 120));
  // (a plot's own legend is inside its role=img, which names it as a whole)
  for (const t of document.querySelectorAll('table'))
    if (!t.closest('[role=img][aria-label]') && !t.getAttribute('aria-label') && !t.getAttribute('aria-labelledby') && !t.querySelector('caption'))
      bad.push(t.outerHTML.slice(0, 120));
  for (const c of document.querySelectorAll('canvas'))
    if (!c.getAttribute('aria-label') && !c.closest('[role=img][aria-label], figure'))
      bad.push(c.outerHTML.slice(0, 120));
  return bad;
}"""


def test_every_control_has_an_accessible_name(page: Any) -> None:
    for route in PAGES:
        go(page, route)
        page.wait_for_load_state("networkidle")
        assert page.evaluate(UNNAMED) == [], f"#/{route} has unnamed controls"
        # One h1 per page, and the main landmark.
        expect(page.get_by_role("heading", level=1)).to_have_count(1)
        expect(page.get_by_role("main")).to_have_count(1)
    # A detail view and a confirmation dialog as well.
    go(page, "queues")
    page.locator("tr[data-queue=orders]").get_by_role("link").click()
    page.get_by_role("region", name="Queue orders").get_by_role("button", name="Purge").click()
    dialog = page.get_by_role("dialog", name="Purge queue?")
    expect(dialog).to_be_visible()
    assert page.evaluate(UNNAMED) == []
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_no_request_leaves_the_broker_and_no_script_error(page: Any) -> None:
    assert page.requests, "no request was recorded"
    outside = [u for u in page.requests if not u.startswith(page.origin + "/")]
    assert outside == []
    assert page.errors == []
