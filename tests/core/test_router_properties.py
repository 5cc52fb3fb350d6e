"""Property tests: the tries agree with the naive reference matcher.

Random filter sets (small alphabet, empty levels, ``+``, ``#``, ``$`` first levels,
``$share`` groups), random topics, random unsubscribes; whatever the router and the
retained store answer must equal what :func:`topic_matches` says filter by filter.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fluxmq_core.message import Message
from fluxmq_core.router import (
    Delivery,
    RetainedStore,
    Router,
    SubscriptionOptions,
    parse_shared,
    topic_matches,
    validate_topic_filter,
    validate_topic_name,
)


class Recorder:
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.protocol = "mqtt"
        self.got: list[tuple[Message, Delivery]] = []

    def deliver(self, message: Message, delivery: Delivery) -> None:
        self.got.append((message, delivery))


PLAIN_LEVELS = ["a", "b", "", "$x"]
FIRST_LEVELS = [*PLAIN_LEVELS, "$SYS"]

topics = st.builds(
    lambda first, rest: "/".join([first, *rest]),
    st.sampled_from(FIRST_LEVELS),
    st.lists(st.sampled_from(PLAIN_LEVELS), max_size=3),
).filter(bool)  # the empty topic is invalid; "/" and "a//b" are not

plain_filters = st.builds(
    lambda first, rest, hash_: "/".join([first, *rest, *(["#"] if hash_ else [])]),
    st.sampled_from([*FIRST_LEVELS, "+"]),
    st.lists(st.sampled_from([*PLAIN_LEVELS, "+"]), max_size=3),
    st.booleans(),
).filter(bool) | st.just("#")

filters = plain_filters | st.builds(
    lambda group, f: f"$share/{group}/{f}", st.sampled_from(["g", "h"]), plain_filters
)

options = st.builds(
    SubscriptionOptions,
    qos=st.integers(0, 2),
    subscription_id=st.none() | st.integers(1, 50),
)

subscriptions = st.lists(st.tuples(st.integers(0, 4), filters, options), min_size=1, max_size=25)


@settings(max_examples=300, deadline=None)
@given(
    subs=subscriptions,
    removals=st.lists(st.integers(0, 24), max_size=6),
    probes=st.lists(topics, min_size=1, max_size=8),
    cache_size=st.sampled_from([0, 2, 4096]),
)
def test_router_delivers_to_exactly_the_matching_subscribers(
    subs: list[tuple[int, str, SubscriptionOptions]],
    removals: list[int],
    probes: list[str],
    cache_size: int,
) -> None:
    router = Router(cache_size=cache_size)
    recorders = [Recorder(f"c{i}") for i in range(5)]
    model: dict[tuple[int, str], SubscriptionOptions] = {}
    for who, topic_filter, opts in subs:
        validate_topic_filter(topic_filter)
        router.subscribe(recorders[who], topic_filter, opts)
        model[(who, topic_filter)] = opts
    for index in removals:
        if index < len(subs):
            who, topic_filter, _ = subs[index]
            assert router.unsubscribe(recorders[who], topic_filter) == (
                model.pop((who, topic_filter), None) is not None
            )
    assert router.subscription_count == len(model)

    for topic in probes:
        validate_topic_name(topic)
        # Twice: the second publish of a topic goes through the cache.
        for _ in range(2):
            for r in recorders:
                r.got.clear()
            router.publish(Message(topic))
            expected_plain: dict[int, list[SubscriptionOptions]] = {}
            expected_groups: set[tuple[str, str]] = set()
            for (who, topic_filter), opts in model.items():
                if not topic_matches(topic_filter, topic):
                    continue
                shared = parse_shared(topic_filter)
                if shared is None:
                    expected_plain.setdefault(who, []).append(opts)
                else:
                    expected_groups.add(shared)

            got_plain = {
                who: d
                for who, r in enumerate(recorders)
                for _, d in r.got
                if d.shared_group is None
            }
            assert set(got_plain) == set(expected_plain), topic
            for who, matched in expected_plain.items():
                delivery = got_plain[who]
                assert delivery.qos == max(o.qos for o in matched)
                assert sorted(delivery.subscription_ids) == sorted(
                    o.subscription_id for o in matched if o.subscription_id is not None
                )
            # Exactly one delivery per matching (group, filter).
            shared_count = sum(1 for r in recorders for _, d in r.got if d.shared_group)
            assert shared_count == len(expected_groups)
            got_groups = {d.shared_group for r in recorders for _, d in r.got if d.shared_group}
            assert got_groups == {g for g, _ in expected_groups}


@settings(max_examples=300, deadline=None)
@given(
    stored=st.lists(topics, max_size=15, unique=True),
    removed=st.lists(st.integers(0, 14), max_size=5),
    topic_filter=plain_filters,
)
def test_retained_lookup_matches_the_reference(
    stored: list[str], removed: list[int], topic_filter: str
) -> None:
    store = RetainedStore()
    for topic in stored:
        store.put(Message(topic, b"v", retain=True))
    live = set(stored)
    for index in removed:
        if index < len(stored):
            store.discard(stored[index])
            live.discard(stored[index])
    assert len(store) == len(live)
    expected = sorted(t for t in live if topic_matches(topic_filter, t))
    assert sorted(m.topic for m in store.match(topic_filter)) == expected
