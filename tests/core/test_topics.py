"""Topic names, filters, ``$share`` parsing, the reference matcher and AMQP mapping."""

from __future__ import annotations

import pytest

from fluxmq_core.router import (
    MAX_TOPIC_BYTES,
    TopicError,
    amqp_pattern_to_filter,
    amqp_routing_key_to_topic,
    filter_to_amqp_pattern,
    is_dollar_topic,
    parse_shared,
    topic_matches,
    topic_to_amqp_routing_key,
    validate_topic_filter,
    validate_topic_name,
)

# -- topic names ------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic", ["a", "a/b/c", "/", "/a", "a/", "a//b", "$SYS/broker/load", "ümlaut/東京", "a b"]
)
def test_valid_topic_names(topic: str) -> None:
    validate_topic_name(topic)


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("", "empty"),
        ("a/+/c", "wildcard"),
        ("a/#", "wildcard"),
        ("a+b", "wildcard"),
        ("a\x00b", r"U\+0000"),
        ("a\ud800", "UTF-8"),
    ],
)
def test_invalid_topic_names(topic: str, fragment: str) -> None:
    with pytest.raises(TopicError, match=fragment):
        validate_topic_name(topic)


def test_topic_name_length_is_counted_in_utf8_bytes() -> None:
    validate_topic_name("a" * MAX_TOPIC_BYTES)
    with pytest.raises(TopicError, match="longer"):
        validate_topic_name("a" * (MAX_TOPIC_BYTES + 1))
    # 3 bytes per code point: fewer characters than the limit, more bytes.
    with pytest.raises(TopicError, match="longer"):
        validate_topic_name("東" * (MAX_TOPIC_BYTES // 3 + 1))


def test_topic_error_is_a_value_error() -> None:
    assert issubclass(TopicError, ValueError)


# -- topic filters ----------------------------------------------------------------


@pytest.mark.parametrize(
    "topic_filter",
    [
        "#",
        "+",
        "a/#",
        "a/+/c",
        "+/+",
        "/#",
        "a//+",
        "$SYS/#",
        "$share/g/a/b",
        "$share/g/#",
        "$share/group-1/+/x",
        "$share",  # no slash after it: an ordinary filter on the topic "$share"
    ],
)
def test_valid_topic_filters(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)


@pytest.mark.parametrize(
    ("topic_filter", "fragment"),
    [
        ("", "empty"),
        ("a/#/b", "last level"),
        ("#/a", "last level"),
        ("a#", "whole level"),
        ("a/b#", "whole level"),
        ("a+", "whole level"),
        ("a/+b/c", "whole level"),
        ("a\x00", r"U\+0000"),
        ("$share/g", "form"),
        ("$share//a", "share name is empty"),
        ("$share/g+/a", "share name"),
        ("$share/g#/a", "share name"),
        ("$share/g/", "filter part is empty"),
        ("$share/g/a/#/b", "last level"),
        ("$share/g/a+", "whole level"),
    ],
)
def test_invalid_topic_filters(topic_filter: str, fragment: str) -> None:
    with pytest.raises(TopicError, match=fragment):
        validate_topic_filter(topic_filter)


def test_parse_shared() -> None:
    assert parse_shared("a/b") is None
    assert parse_shared("$SYS/#") is None
    assert parse_shared("$share") is None
    assert parse_shared("$share/g/a/b") == ("g", "a/b")
    assert parse_shared("$share/g/#") == ("g", "#")
    with pytest.raises(TopicError):
        parse_shared("$share/g")


def test_is_dollar_topic() -> None:
    assert is_dollar_topic("$SYS/x")
    assert not is_dollar_topic("a/$SYS")


# -- reference matcher --------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b/c", "a/b/c", True),
        ("a/b/c", "a/b", False),
        ("a/b", "a/b/c", False),
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a//c", True),
        ("a/+/c", "a/b/d", False),
        ("a/+", "a", False),
        ("+", "a", True),
        ("+", "/a", False),
        ("+/+", "/a", True),
        ("/+", "/a", True),
        ("a/#", "a", True),  # '#' matches the parent level
        ("a/#", "a/b/c", True),
        ("a/#", "ab", False),
        ("#", "a/b", True),
        ("#", "/", True),
        ("a/+/#", "a/b", True),
        ("a/+/#", "a", False),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("+", "$SYS", False),
        ("$SYS/#", "$SYS/x", True),
        ("$SYS/#", "$SYS", True),
        ("$SYS/+", "$SYS/x", True),
        ("a/$x", "a/$x", True),
        ("a/+", "a/$x", True),  # only the first level is special
        ("$share/g/a/+", "a/b", True),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


# -- AMQP mapping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routing_key", "topic"),
    [
        ("a.b.c", "a/b/c"),
        ("a", "a"),
        ("sensors.temp/c", "sensors/temp.c"),  # separators are swapped, not replaced
        ("a..b", "a//b"),
        ("a.*", "a/*"),  # '*' is literal in a routing key
    ],
)
def test_routing_key_topic_round_trip(routing_key: str, topic: str) -> None:
    assert amqp_routing_key_to_topic(routing_key) == topic
    assert topic_to_amqp_routing_key(topic) == routing_key


@pytest.mark.parametrize(
    ("pattern", "topic_filter"),
    [
        ("a.*.#", "a/+/#"),
        ("#", "#"),
        ("*", "+"),
        ("*.b.*", "+/b/+"),
        ("a.b", "a/b"),
        ("a/x.#", "a.x/#"),
    ],
)
def test_pattern_filter_round_trip(pattern: str, topic_filter: str) -> None:
    assert amqp_pattern_to_filter(pattern) == topic_filter
    assert filter_to_amqp_pattern(topic_filter) == pattern


def test_amqp_hash_in_the_middle_has_no_mqtt_equivalent() -> None:
    with pytest.raises(TopicError, match="'#' before the last word has no MQTT equivalent"):
        amqp_pattern_to_filter("a.#.b")
    with pytest.raises(TopicError, match="no MQTT equivalent"):
        amqp_pattern_to_filter("#.b")


@pytest.mark.parametrize("pattern", ["", "a.+", "a.b+", "a.x#"])
def test_amqp_patterns_mqtt_cannot_express(pattern: str) -> None:
    with pytest.raises(TopicError):
        amqp_pattern_to_filter(pattern)


@pytest.mark.parametrize("routing_key", ["", "a.+", "a.#", "a\x00"])
def test_amqp_routing_keys_mqtt_cannot_express(routing_key: str) -> None:
    with pytest.raises(TopicError):
        amqp_routing_key_to_topic(routing_key)


@pytest.mark.parametrize("topic_filter", ["a/*", "$share/g/a/b", "a/#/b"])
def test_mqtt_filters_amqp_cannot_express(topic_filter: str) -> None:
    with pytest.raises(TopicError):
        filter_to_amqp_pattern(topic_filter)


def test_topic_to_routing_key_rejects_wildcards() -> None:
    with pytest.raises(TopicError):
        topic_to_amqp_routing_key("a/+")
