"""Hypothesis fuzz of the parsing that is ours (paths, query parameters, Content-Format
mapping, listener addresses) and of the live listener with arbitrary datagrams and
arbitrary well-framed requests."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from fluxmq_coap.resources import (
    Kind,
    QueryError,
    content_format_for,
    content_type_for,
    parse_query,
    route,
    split_hostport,
)
from fluxmq_coap.testing import ACK, CON, WAIT, decode, encode, path_options
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxmq_core.testing.broker import BrokerThread

segments = st.lists(st.text(max_size=12), max_size=6)


@given(segments)
def test_route_never_raises_and_ps_keeps_levels(path):
    target = route(path)
    assert isinstance(target.kind, Kind)
    if path[:1] == ["ps"] and len(path) > 1 and path[1:] != [""]:
        assert target.kind is Kind.PS and target.topic == "/".join(path[1:])


@given(st.lists(st.text(max_size=30), max_size=8))
def test_parse_query_only_raises_query_error(items):
    try:
        q = parse_query(items)
    except QueryError as exc:
        assert str(exc)
    else:
        assert q.qos in (0, 1, 2)
        assert isinstance(q.retain, bool)


@given(st.integers(0, 0xFFFF))
def test_content_format_round_trip(n):
    ct = content_type_for(n)
    back = content_format_for(ct)
    assert back is not None and content_type_for(back) == ct


@given(st.text(max_size=40))
def test_content_format_for_any_type_is_none_or_a_number(ct):
    cf = content_format_for(ct)
    assert cf is None or 0 <= cf <= 0xFFFF


@given(st.text(max_size=40))
def test_split_hostport_only_value_error(text):
    try:
        host, port = split_hostport(text)
    except ValueError:
        return
    assert host and 0 <= port <= 65535


class _Errors(logging.Handler):
    """Records ERROR logs of any thread: an exception escaping into the event loop's
    handler (a traceback in the broker's log) fails the fuzz tests."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_errors = _Errors()


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[BrokerThread, socket.socket]]:
    root = logging.getLogger()
    root.addHandler(_errors)
    try:
        with BrokerThread(plugins=["coap"]) as b:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(WAIT)
            sock.connect(("127.0.0.1", b.port("coap.bind")))
            yield b, sock
            sock.close()
    finally:
        root.removeHandler(_errors)


_mid = iter(range(1, 1 << 30))


def _health(sock: socket.socket) -> None:
    mid = next(_mid) & 0xFFFF
    sock.send(encode(CON, 1, mid, b"h", path_options("/health")))
    while True:
        m = decode(sock.recv(65536))
        if m["mid"] == mid and m["mtype"] == ACK:
            assert m["code"] == 0x45
            assert not _errors.records, [r.getMessage() for r in _errors.records]
            return


_fuzz = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@_fuzz
@given(st.binary(max_size=300))
def test_arbitrary_datagrams(live, data):
    _b, sock = live
    sock.send(data)
    _health(sock)


@_fuzz
@given(
    st.sampled_from([1, 2, 3, 4, 5, 7, 31]),
    st.lists(st.tuples(st.integers(0, 3000), st.binary(max_size=20)), max_size=6),
    st.binary(max_size=64),
)
def test_arbitrary_requests(live, code, options, payload):
    _b, sock = live
    mid = next(_mid) & 0xFFFF
    sock.send(encode(CON, code, mid, b"f", options, payload))
    _health(sock)
