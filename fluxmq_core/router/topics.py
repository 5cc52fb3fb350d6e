"""Topic names, topic filters and the rules that relate them.

This module holds the pure-string side of routing: validating MQTT topic names and
filters, splitting ``$share/<group>/<filter>`` subscriptions, a naive reference
matcher, the algebra of two filters (does one cover the other, do they overlap: what
ACLs are decided with), and the mapping between AMQP 0.9.1 topic-exchange routing
keys / binding patterns and MQTT topics / filters.

It deliberately holds no index: :mod:`fluxmq_core.router.trie` and
:mod:`fluxmq_core.router.retained` do the fast matching. :func:`topic_matches` is
kept simple on purpose so tests (and the linear-scan benchmark baseline) can check
the tries against an implementation that is obviously right.

MQTT rules applied everywhere (MQTT 5.0, section 4.7):

* levels are separated by ``/``; empty levels are legal (``a//b``, ``/a``);
* ``+`` matches exactly one level, ``#`` matches any number of levels including
  zero, so ``a/#`` also matches ``a`` (the "parent" level);
* a topic whose first level starts with ``$`` (``$SYS/...``) is not matched by a
  filter whose first level is ``+`` or ``#``; ``$SYS/#`` matches it.

AMQP mapping (topic exchanges)::

    AMQP                 MQTT
    ----                 ----
    word separator  .    /  level separator
    *  (one word)        +  (one level)
    #  (zero or more)    #  (zero or more, last level only)
    literal /  in a word .  literal dot in a level

The separators are *swapped*, not just replaced, so the mapping is a bijection on
ordinary names: MQTT ``sensors/temp.c`` <-> AMQP ``sensors.temp/c``, and a level
stays a word. Things with no equivalent raise :class:`TopicError` rather than
silently changing meaning: AMQP ``#`` before the last word, an AMQP word ``+``
(literal in AMQP, a wildcard in MQTT), an MQTT level ``*`` (literal in MQTT, a
wildcard in AMQP), and wildcard characters inside a word or level. One difference
is documented rather than mapped: in AMQP ``#`` also matches ``$``-prefixed
routing keys, in MQTT it does not.
"""

from __future__ import annotations

__all__ = [
    "MAX_TOPIC_BYTES",
    "SHARE_PREFIX",
    "TopicError",
    "amqp_pattern_to_filter",
    "amqp_routing_key_to_topic",
    "filter_covers",
    "filter_to_amqp_pattern",
    "filters_overlap",
    "is_dollar_topic",
    "parse_shared",
    "strip_share",
    "topic_matches",
    "topic_to_amqp_routing_key",
    "validate_topic_filter",
    "validate_topic_name",
]

#: MQTT strings carry a two-byte length prefix.
MAX_TOPIC_BYTES = 65535

SHARE_PREFIX = "$share/"

# str.translate table that swaps '.' and '/' in one pass (see the module docstring).
_SWAP_SEPARATORS = str.maketrans({".": "/", "/": "."})


class TopicError(ValueError):
    """A topic name, topic filter, routing key or binding pattern is invalid.

    A ``ValueError`` so callers that do not care about the distinction can catch the
    broad type; protocol adapters map it to their own reason code (MQTT 0x8F /
    0x90, AMQP 403/406).
    """


def _check_common(kind: str, value: str) -> None:
    if not value:
        raise TopicError(f"{kind} must not be empty")
    if "\x00" in value:
        raise TopicError(f"{kind} must not contain U+0000")
    # Encoding is done in C and also rejects lone surrogates, which MQTT forbids.
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise TopicError(f"{kind} is not valid UTF-8 (lone surrogate)") from exc
    if size > MAX_TOPIC_BYTES:
        raise TopicError(f"{kind} is longer than {MAX_TOPIC_BYTES} UTF-8 bytes ({size})")


def validate_topic_name(topic: str) -> None:
    """Check a name a message is published to; raise :class:`TopicError` if invalid.

    Protocols call this at the edge, once per publish. The router itself does not
    validate on the hot path, so whatever reaches ``Router.publish`` must have been
    checked here first.
    """
    _check_common("topic name", topic)
    if "+" in topic or "#" in topic:
        raise TopicError(f"topic name {topic!r} must not contain wildcards '+' or '#'")


def _check_filter_levels(kind: str, filt: str) -> None:
    levels = filt.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if level == "#":
            if i != last:
                raise TopicError(f"{kind} {filt!r}: '#' must be the last level")
        elif level == "+":
            continue
        elif "#" in level:
            raise TopicError(f"{kind} {filt!r}: '#' must occupy a whole level")
        elif "+" in level:
            raise TopicError(f"{kind} {filt!r}: '+' must occupy a whole level")


def validate_topic_filter(topic_filter: str) -> None:
    """Check a subscription filter, including ``$share/<group>/<filter>`` forms.

    Raises :class:`TopicError` with a message fit to show the client. Called on
    subscribe, which is rare compared with publish, so it can afford to be thorough.
    """
    _check_common("topic filter", topic_filter)
    if topic_filter.startswith(SHARE_PREFIX):
        shared = parse_shared(topic_filter)  # raises if malformed
        assert shared is not None  # it starts with $share/
        group, real = shared
        if not group:
            raise TopicError(f"shared subscription {topic_filter!r}: share name is empty")
        if "+" in group or "#" in group:
            raise TopicError(
                f"shared subscription {topic_filter!r}: share name must not contain '+' or '#'"
            )
        if not real:
            raise TopicError(f"shared subscription {topic_filter!r}: filter part is empty")
        _check_filter_levels("shared subscription filter", real)
        return
    _check_filter_levels("topic filter", topic_filter)


def parse_shared(topic_filter: str) -> tuple[str, str] | None:
    """Split ``$share/<group>/<filter>`` into ``(group, filter)``; None if not shared.

    A filter that starts with ``$share/`` but has no ``/`` after the group cannot be
    meant as an ordinary filter, so it raises :class:`TopicError` instead of
    returning None (which would quietly subscribe to a literal ``$share/...``
    topic). The group is not validated here; :func:`validate_topic_filter` does it.
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    group, sep, real = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not sep:
        raise TopicError(
            f"shared subscription {topic_filter!r} must have the form $share/<group>/<filter>"
        )
    return group, real


def is_dollar_topic(topic: str) -> bool:
    """True for topics reserved to the broker or applications (``$SYS/...``)."""
    return topic.startswith("$")


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Naive reference matcher: does ``topic_filter`` match ``topic``?

    Linear in the number of levels and allocation-happy by design; it exists to
    check the tries against, and as the "scan every subscription" baseline the
    benchmark compares the trie with. A ``$share/<group>/`` prefix is stripped, as
    the group does not take part in matching. Inputs are assumed valid.
    """
    shared = parse_shared(topic_filter)
    if shared is not None:
        topic_filter = shared[1]
    flevels = topic_filter.split("/")
    tlevels = topic.split("/")
    if tlevels[0].startswith("$") and flevels[0] in ("+", "#"):
        return False
    for i, flevel in enumerate(flevels):
        if flevel == "#":
            return True
        if i >= len(tlevels):
            return False
        if flevel != "+" and flevel != tlevels[i]:
            return False
    return len(flevels) == len(tlevels)


def strip_share(topic_filter: str) -> str:
    """The filter a ``$share/<group>/<filter>`` subscription matches with (the
    group takes no part in matching or authorization); other filters unchanged."""
    if topic_filter.startswith(SHARE_PREFIX):
        parts = topic_filter.split("/", 2)
        if len(parts) == 3:
            return parts[2]
    return topic_filter


def filter_covers(rule: str, requested: str) -> bool:
    """Whether every topic matched by ``requested`` is also matched by ``rule``.

    Both are MQTT filters (a plain topic name is a filter without wildcards, so this
    is also "does ``rule`` match topic ``requested``"). MQTT's ``$`` rule holds: a
    leading ``+`` or ``#`` does not match topics starting with ``$``. Examples:
    ``a/#`` covers ``a/+/b`` and ``a``; ``a/b`` does not cover ``a/#``; ``+/#``
    covers ``#``.
    """
    r = rule.split("/")
    q = requested.split("/")
    if q[0].startswith("$") and r[0] in ("+", "#"):
        return False
    i = 0
    while True:
        if i == len(r):
            return i == len(q)
        if r[i] == "#":
            return True
        if i == len(q):
            return False
        if q[i] == "#":
            # q matches its parent level (if any) and everything below: only a rule
            # remainder of "#" does, or "+/#" at the root, where there is no parent.
            return i == 0 and r[i:] == ["+", "#"]
        if r[i] == "+":
            i += 1
            continue
        if q[i] == "+" or r[i] != q[i]:
            return False
        i += 1


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic is matched by both filters (``$`` rule included)."""
    x = a.split("/")
    y = b.split("/")
    if (x[0] in ("+", "#") and y[0].startswith("$")) or (
        y[0] in ("+", "#") and x[0].startswith("$")
    ):
        return False
    i = 0
    while True:
        x_end, y_end = i == len(x), i == len(y)
        if x_end and y_end:
            return True
        if (not x_end and x[i] == "#") or (not y_end and y[i] == "#"):
            return True
        if x_end or y_end:
            return False
        if x[i] == "+" or y[i] == "+" or x[i] == y[i]:
            i += 1
            continue
        return False


# -- AMQP topic exchanges ----------------------------------------------------------


def amqp_routing_key_to_topic(routing_key: str) -> str:
    """Map an AMQP routing key (``a.b.c``) to the MQTT topic name ``a/b/c``.

    ``/`` inside a word becomes ``.`` in the level (the separators are swapped).
    Raises :class:`TopicError` when the result is not a valid MQTT topic name:
    an empty routing key (common on direct exchanges, but there is no empty MQTT
    topic) or a key containing ``+`` or ``#``.
    """
    if not routing_key:
        raise TopicError("an empty AMQP routing key has no MQTT topic equivalent")
    topic = routing_key.translate(_SWAP_SEPARATORS)
    validate_topic_name(topic)
    return topic


def topic_to_amqp_routing_key(topic: str) -> str:
    """Map an MQTT topic name (``a/b/c``) to the AMQP routing key ``a.b.c``.

    The inverse of :func:`amqp_routing_key_to_topic`. A level ``*`` becomes a word
    ``*``, which is literal in a routing key (wildcards exist only in bindings).
    """
    validate_topic_name(topic)
    return topic.translate(_SWAP_SEPARATORS)


def amqp_pattern_to_filter(pattern: str) -> str:
    """Map an AMQP binding pattern (``a.*.#``) to the MQTT filter ``a/+/#``.

    Raises :class:`TopicError` for patterns MQTT cannot express: ``#`` anywhere but
    the last word (AMQP allows ``a.#.b``, MQTT has no multi-level wildcard in the
    middle), a literal word ``+`` and ``+``/``#`` inside a word.
    """
    if not pattern:
        raise TopicError("an empty AMQP binding pattern has no MQTT filter equivalent")
    words = pattern.split(".")
    last = len(words) - 1
    levels: list[str] = []
    for i, word in enumerate(words):
        if word == "*":
            levels.append("+")
        elif word == "#":
            if i != last:
                raise TopicError(
                    f"AMQP binding pattern {pattern!r}: '#' before the last word has no "
                    "MQTT equivalent (MQTT allows '#' only as the last level)"
                )
            levels.append("#")
        elif "+" in word or "#" in word:
            raise TopicError(
                f"AMQP binding pattern {pattern!r}: word {word!r} contains '+' or '#', "
                "which MQTT reserves for wildcards"
            )
        else:
            levels.append(word.replace("/", "."))
    topic_filter = "/".join(levels)
    validate_topic_filter(topic_filter)
    return topic_filter


def filter_to_amqp_pattern(topic_filter: str) -> str:
    """Map an MQTT filter (``a/+/#``) to the AMQP binding pattern ``a.*.#``.

    Shared subscriptions have no AMQP binding form (AMQP shares by having several
    consumers on one queue) and raise :class:`TopicError`, as does a literal level
    ``*`` (it would become the AMQP one-word wildcard).
    """
    validate_topic_filter(topic_filter)
    if topic_filter.startswith(SHARE_PREFIX):
        raise TopicError(
            f"shared subscription {topic_filter!r} has no AMQP binding pattern; "
            "bind the inner filter and share the queue instead"
        )
    words: list[str] = []
    for level in topic_filter.split("/"):
        if level == "+":
            words.append("*")
        elif level == "#":
            words.append("#")
        elif level == "*":
            raise TopicError(
                f"MQTT filter {topic_filter!r}: a literal level '*' would become the AMQP "
                "one-word wildcard"
            )
        else:
            words.append(level.replace(".", "/"))
    return ".".join(words)
