"""The core router: subscriptions from every protocol, one publish path, retained.

:class:`Router` is the contract of DESIGN section 4: protocols ``subscribe`` their
subscribers with MQTT-5-shaped options and ``publish`` :class:`Message` objects;
the router matches the topic once, groups the matches per subscriber (highest
granted QoS, every subscription id), picks one member per shared group, honours No
Local and Retain As Published, keeps the retained index, and calls ``deliver``.

The hot path is ``publish`` for a topic seen before. Its work is done ahead of
time: the first publish to a topic walks the trie and builds a *plan* (per
subscriber: subscriber, qos, RAP flag, ids, and the variant to use when No Local
drops some of its subscriptions; plus the share groups), which is cached per topic
until the next subscribe or unsubscribe. A cached publish then allocates one
:class:`Delivery` per subscriber and nothing else.

For a distributed cluster (and only then) two hooks exist: :meth:`Router.watch_filters`
reports which filters this node holds, and :meth:`Router.set_share_handler` lets the
cluster pick which node serves a share group; unset, they cost one ``None`` check.
Tracing has one hook too: a :class:`DeliverySpan` given to :meth:`Router.publish`
for a traced publish only, which takes a copy of the routing loop that tells the
span each step (so the untraced loop pays one ``None`` check per publish, none per
delivery).

Deliberately not here: topic validation on publish (protocols validate at the
edge; see :func:`~fluxmq_core.router.topics.validate_topic_name`), capping the QoS
by the message QoS, queueing, flow control and retained-on-subscribe delivery
(the protocol session does those, using :meth:`Router.retained_for` and the
``bool`` returned by :meth:`Router.subscribe` for Retain Handling 1),
persistence (``on_retained_change`` reports every change instead) and
thread-safety (the router lives on the event loop thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol, TypeAlias

from fluxmq_core.message import Message
from fluxmq_core.router.retained import RetainedStore
from fluxmq_core.router.topics import parse_shared, validate_topic_filter
from fluxmq_core.router.trie import ShareGroup, SubEntry, SubscriptionTrie
from fluxmq_core.router.types import DEFAULT_OPTIONS, Delivery, Subscriber, SubscriptionOptions

__all__ = ["DeliverySpan", "Router"]

log = logging.getLogger("fluxmq.router")

#: (qos, retain_as_published, subscription ids) of a subscriber's grouped matches.
_Grant: TypeAlias = tuple[int, bool, tuple[int, ...]]
#: One subscriber's precomputed delivery: (subscriber, qos, rap, ids, local) where
#: ``local`` is None when none of its matching subscriptions has No Local, ``()``
#: when all of them have it, and otherwise the grant over the others.
_Entry: TypeAlias = tuple[Subscriber, int, bool, tuple[int, ...], "_Grant | tuple[()] | None"]
#: The cached result of matching one topic.
_Plan: TypeAlias = tuple[tuple[_Entry, ...], tuple[ShareGroup, ...]]

_EMPTY_PLAN: _Plan = ((), ())

RetainedCallback: TypeAlias = Callable[[str, "Message | None"], None]


#: ``handler(message, groups) -> deliveries``: decides, for a distributed cluster,
#: which node serves each matched share group (see :meth:`Router.set_share_handler`).
ShareHandler: TypeAlias = Callable[["Message", "tuple[ShareGroup, ...]"], int]


class DeliverySpan(Protocol):
    """The tracing hook of :meth:`Router.publish`, passed by ``BrokerContext.publish``
    for a traced publish only (an untraced publish never reaches these calls).

    In order: ``routing()`` as routing starts (before the retained update and the
    match); ``matched(subscribers, groups)`` after the match, with the number of
    subscribers planned and the names of the share groups matched (not called for
    an expired message, which is not delivered); for each delivery made here,
    ``delivering(subscriber, qos, group)`` just before it (``group`` is the share
    group's name for a picked member, else None) and ``delivered(failed)`` just
    after it; ``shared_elsewhere(deliveries)`` when a cluster's share handler served
    the share groups (its members are named by nobody here); last ``routed(delivered,
    failed)`` with the deliveries made (the share handler's included) and the
    ``deliver`` calls that raised. A subscriber dropped by No Local gets no call.
    """

    def routing(self) -> None: ...

    def matched(self, subscribers: int, groups: list[str]) -> None: ...

    def delivering(self, subscriber: Subscriber, qos: int, group: str | None) -> None: ...

    def delivered(self, failed: bool) -> None: ...

    def shared_elsewhere(self, deliveries: int) -> None: ...

    def routed(self, delivered: int, failed: int) -> None: ...


class FilterListener(Protocol):
    """Told when a filter gains its first or loses its last local subscriber (the
    cluster subscription index: see :meth:`Router.watch_filters`)."""

    def subscription_added(self, topic_filter: str) -> None: ...

    def subscription_removed(self, topic_filter: str) -> None: ...

    def shared_members(self, topic_filter: str, count: int) -> None: ...


def _grant(entries: list[SubEntry]) -> _Grant:
    qos = 0
    rap = False
    ids: list[int] = []
    for e in entries:
        o = e.options
        if o.qos > qos:
            qos = o.qos
        if o.retain_as_published:
            rap = True
        if o.subscription_id is not None:
            ids.append(o.subscription_id)
    return qos, rap, tuple(ids)


def _by_seq(entry: SubEntry) -> int:
    return entry.seq


def _by_first_seq(matched: list[SubEntry]) -> int:
    return matched[0].seq


def _by_group(group: ShareGroup) -> tuple[str, str]:
    return group.topic_filter, group.name


class Router:
    """Topic router shared by every protocol plugin (``BrokerContext.router``).

    ``clock`` gives broker time in seconds (for message expiry); tests inject a
    fake. ``cache_size`` bounds the per-topic match cache (0 disables it; when full,
    the oldest entry is dropped). ``on_retained_change(topic, message_or_None)`` is
    called for every retained update (publish with retain, :meth:`set_retained`,
    :meth:`clear_retained`) so storage and cluster layers can persist and
    replicate; it is not called by :meth:`load_retained`.
    """

    __slots__ = (
        "_cache",
        "_cache_size",
        "_clock",
        "_filter_counts",
        "_filter_listener",
        "_on_retained_change",
        "_retained",
        "_seq",
        "_share_handler",
        "_subs",
        "_trie",
    )

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        cache_size: int = 4096,
        on_retained_change: RetainedCallback | None = None,
    ) -> None:
        self._clock = clock
        self._cache_size = max(0, cache_size)
        self._on_retained_change = on_retained_change
        self._trie = SubscriptionTrie()
        self._retained = RetainedStore()
        # id(subscriber) -> (subscriber, {full filter as given: options}); holding the
        # subscriber here keeps its id unique while it has subscriptions.
        self._subs: dict[int, tuple[Subscriber, dict[str, SubscriptionOptions]]] = {}
        self._cache: dict[str, _Plan] = {}
        self._seq = 0
        # Only kept while a cluster listens (watch_filters); None costs nothing.
        self._filter_listener: FilterListener | None = None
        self._filter_counts: dict[str, int] = {}
        self._share_handler: ShareHandler | None = None

    def set_share_handler(self, handler: ShareHandler | None) -> None:
        """Let ``handler`` serve the share groups a publish matches instead of picking a
        local member: a distributed cluster picks one node per group cluster-wide and
        delivers here with :meth:`deliver_group` only when this node is picked.
        ``None`` (the default) picks locally."""
        self._share_handler = handler

    def deliver_group(self, group: ShareGroup, message: Message) -> int:
        """Deliver ``message`` to the member of ``group`` whose turn it is (1), or to
        nobody when every member is excluded (0)."""
        member = group.pick(message.origin_client, message.origin_protocol)
        if member is None:
            return 0
        try:
            member[0].deliver(message, Delivery(member[1], False, member[2], group.name))
        except Exception:
            self._log_failure(member[0], message)
            return 0
        return 1

    def share_group(self, topic_filter: str, name: str) -> ShareGroup | None:
        """The local share group ``name`` on (inner) ``topic_filter``, if it has members."""
        return self._trie.group(topic_filter, name)

    def watch_filters(self, listener: FilterListener | None) -> dict[str, int]:
        """Report filters to ``listener`` from now on: ``subscription_added`` when a
        filter (as given, ``$share/...`` included) gets its first subscriber of any
        protocol, ``subscription_removed`` when its last one goes, and
        ``shared_members`` with the number of local members of a ``$share/`` filter
        whenever it changes while above zero. Returns ``{filter: subscribers}`` held
        right now (the listener's starting point); ``None`` stops reporting.

        A distributed cluster driver uses this to publish which filters this node
        holds; with no listener the router does no counting at all.
        """
        self._filter_listener = listener
        counts: dict[str, int] = {}
        if listener is not None:
            for _sub, filters in self._subs.values():
                for f in filters:
                    counts[f] = counts.get(f, 0) + 1
        self._filter_counts = counts
        return dict(counts)

    def _filter_changed(self, topic_filter: str, delta: int) -> None:
        listener = self._filter_listener
        if listener is None:
            return
        counts = self._filter_counts
        n = counts.get(topic_filter, 0) + delta
        try:
            if n <= 0:
                counts.pop(topic_filter, None)
                if delta < 0:
                    listener.subscription_removed(topic_filter)
            else:
                counts[topic_filter] = n
                if n == 1 and delta > 0:
                    listener.subscription_added(topic_filter)
                if topic_filter.startswith("$share/"):
                    # Members per node weigh the cluster-wide share round robin.
                    listener.shared_members(topic_filter, n)
        except Exception:
            # Logged, not raised: a subscribe must not fail because the cluster's
            # index did.
            log.exception("cluster filter listener failed for %r", topic_filter)

    # -- subscriptions ---------------------------------------------------------

    def subscribe(
        self,
        subscriber: Subscriber,
        topic_filter: str,
        options: SubscriptionOptions = DEFAULT_OPTIONS,
    ) -> bool:
        """Subscribe ``subscriber`` to ``topic_filter``; ``$share/g/f`` joins group
        ``g`` on filter ``f``.

        Returns True for a new subscription and False when it replaced the same
        subscriber's subscription on the same filter (MQTT Retain Handling 1 sends
        retained messages only in the first case). Raises
        :class:`~fluxmq_core.router.topics.TopicError` for an invalid filter.
        """
        validate_topic_filter(topic_filter)
        shared = parse_shared(topic_filter)
        key = id(subscriber)
        self._seq += 1
        entry = SubEntry(subscriber, options, self._seq)
        if shared is None:
            new = self._trie.add(topic_filter, key, entry)
        else:
            new = self._trie.add(shared[1], key, entry, shared[0])
        record = self._subs.get(key)
        if record is None:
            record = self._subs[key] = (subscriber, {})
        record[1][topic_filter] = options
        self._cache.clear()
        if new and self._filter_listener is not None:
            self._filter_changed(topic_filter, 1)
        return new

    def unsubscribe(self, subscriber: Subscriber, topic_filter: str) -> bool:
        """Remove one subscription; True if it existed."""
        key = id(subscriber)
        record = self._subs.get(key)
        if record is None or topic_filter not in record[1]:
            return False
        shared = parse_shared(topic_filter)
        if shared is None:
            self._trie.remove(topic_filter, key)
        else:
            self._trie.remove(shared[1], key, shared[0])
        del record[1][topic_filter]
        if not record[1]:
            del self._subs[key]
        self._cache.clear()
        if self._filter_listener is not None:
            self._filter_changed(topic_filter, -1)
        return True

    def unsubscribe_all(self, subscriber: Subscriber) -> int:
        """Remove every subscription of ``subscriber`` (session end); returns how
        many there were."""
        record = self._subs.get(id(subscriber))
        if record is None:
            return 0
        filters = list(record[1])
        for topic_filter in filters:
            self.unsubscribe(subscriber, topic_filter)
        return len(filters)

    def subscriptions_of(self, subscriber: Subscriber) -> dict[str, SubscriptionOptions]:
        """A copy of ``{filter: options}`` for ``subscriber`` (filters as given,
        ``$share/...`` included), in subscription order."""
        record = self._subs.get(id(subscriber))
        return dict(record[1]) if record is not None else {}

    @property
    def subscription_count(self) -> int:
        """Subscriptions held, counting each (subscriber, filter) once."""
        return len(self._trie)

    # -- matching --------------------------------------------------------------

    def _plan(self, topic: str) -> _Plan:
        """The cached plan for ``topic``, building (and caching) it on a miss."""
        plan = self._cache.get(topic)
        if plan is not None:
            return plan
        plan = self._build(topic)
        if self._cache_size:
            cache = self._cache
            if len(cache) >= self._cache_size:
                # Drop the oldest insert; dicts keep insertion order.
                del cache[next(iter(cache))]
            cache[topic] = plan
        return plan

    def _build(self, topic: str) -> _Plan:
        nodes = self._trie.match(topic)
        if not nodes:
            return _EMPTY_PLAN
        per_subscriber: dict[int, list[SubEntry]] = {}
        groups: list[ShareGroup] = []
        for node in nodes:
            if node.subs:
                for key, entry in node.subs.items():
                    found = per_subscriber.get(key)
                    if found is None:
                        per_subscriber[key] = [entry]
                    else:
                        found.append(entry)
            if node.groups:
                groups.extend(node.groups.values())
        grouped = list(per_subscriber.values())
        for matched in grouped:
            if len(matched) > 1:
                matched.sort(key=_by_seq)
        # Oldest subscription first: a stable order that does not depend on the
        # shape of the trie.
        if len(grouped) > 1:
            grouped.sort(key=_by_first_seq)
        entries: list[_Entry] = []
        for matched in grouped:
            qos, rap, ids = _grant(matched)
            local: _Grant | tuple[()] | None = None
            for e in matched:
                if e.options.no_local:
                    others = [e for e in matched if not e.options.no_local]
                    local = _grant(others) if others else ()
                    break
            entries.append((matched[0].subscriber, qos, rap, ids, local))
        if len(groups) > 1:
            groups.sort(key=_by_group)
        return tuple(entries), tuple(groups)

    def match(self, topic: str) -> list[tuple[Subscriber, Delivery]]:
        """What a publish to ``topic`` would deliver, without delivering.

        For tests, tools and the benchmark. Answers for a non-retained message
        from no client (so No Local drops nothing and ``retain`` is False). Each
        share group contributes the member whose turn it is, and the turn does
        not advance. Uses and fills the match cache exactly like :meth:`publish`.
        """
        entries, groups = self._plan(topic)
        out = [(sub, Delivery(qos, False, ids)) for sub, qos, _rap, ids, _local in entries]
        for group in groups:
            member = group.peek()
            if member is not None:
                out.append((member[0], Delivery(member[1], False, member[2], group.name)))
        return out

    def plan(self, topic: str) -> _Plan:
        """The cached plan of ``topic`` (building it on a miss): ``(entries,
        groups)`` where each entry is ``(subscriber, qos, rap, ids, local)`` as
        :meth:`publish` walks them (``local``: None when no matching subscription
        has No Local, ``()`` when all of them have it, else the grant of the
        others). For a protocol that delivers a run of plain messages itself (see
        ``BrokerContext.route_plan``); valid until the next subscribe or
        unsubscribe."""
        plan = self._cache.get(topic)
        if plan is None:
            plan = self._plan(topic)
        return plan

    # -- publish ---------------------------------------------------------------

    def publish(self, message: Message, span: DeliverySpan | None = None) -> int:
        """Route ``message``: update retained, then deliver to every match.

        Returns the number of ``deliver`` calls that returned normally. A
        subscriber whose ``deliver`` raises is logged (with its client id) and
        skipped; the others still get the message. An expired message updates
        the retained index (the publisher meant to replace it) but is not
        delivered.

        ``span`` is the tracing hook (see :class:`DeliverySpan`): given only for
        a traced publish, which then takes :meth:`_publish_traced`, the same
        routing told to the span step by step. Without it the publish pays one
        check of a local, none per delivery.
        """
        if span is not None:
            return self._publish_traced(message, span)
        if message.retain:
            self._update_retained(message)
        if message.expires_at is not None and message.expired(self._clock()):
            return 0
        plan = self._cache.get(message.topic)
        if plan is None:
            plan = self._plan(message.topic)
        entries, groups = plan
        delivered = 0
        if entries:
            retain = message.retain
            origin_client = message.origin_client
            origin_protocol = message.origin_protocol
            for sub, qos, rap, ids, local in entries:
                if (
                    local is not None
                    and sub.client_id == origin_client
                    and sub.protocol == origin_protocol
                ):
                    if not local:
                        continue
                    qos, rap, ids = local
                try:
                    sub.deliver(message, Delivery(qos, retain and rap, ids))
                except Exception:
                    self._log_failure(sub, message)
                    continue
                delivered += 1
        if groups:
            handler = self._share_handler
            if handler is not None:
                delivered += handler(message, groups)
            else:
                for group in groups:
                    member = group.pick(message.origin_client, message.origin_protocol)
                    if member is None:
                        continue
                    sub = member[0]
                    try:
                        sub.deliver(message, Delivery(member[1], False, member[2], group.name))
                    except Exception:
                        self._log_failure(sub, message)
                        continue
                    delivered += 1
        return delivered

    def _publish_traced(self, message: Message, span: DeliverySpan) -> int:
        """:meth:`publish` of a traced message: the same routing (same deliveries,
        same share-group turns), each step told to ``span``."""
        span.routing()
        delivered = 0
        failed = 0
        try:
            if message.retain:
                self._update_retained(message)
            if message.expires_at is not None and message.expired(self._clock()):
                return 0
            entries, groups = self.plan(message.topic)
            span.matched(len(entries), [g.name for g in groups])
            retain = message.retain
            origin_client = message.origin_client
            origin_protocol = message.origin_protocol
            for sub, qos, rap, ids, local in entries:
                if (
                    local is not None
                    and sub.client_id == origin_client
                    and sub.protocol == origin_protocol
                ):
                    if not local:
                        continue
                    qos, rap, ids = local
                span.delivering(sub, qos, None)
                try:
                    sub.deliver(message, Delivery(qos, retain and rap, ids))
                except Exception:
                    self._log_failure(sub, message)
                    span.delivered(True)
                    failed += 1
                    continue
                span.delivered(False)
                delivered += 1
            if groups:
                handler = self._share_handler
                if handler is not None:
                    elsewhere = handler(message, groups)
                    span.shared_elsewhere(elsewhere)
                    delivered += elsewhere
                else:
                    for group in groups:
                        member = group.pick(origin_client, origin_protocol)
                        if member is None:
                            continue
                        sub = member[0]
                        span.delivering(sub, member[1], group.name)
                        try:
                            sub.deliver(message, Delivery(member[1], False, member[2], group.name))
                        except Exception:
                            self._log_failure(sub, message)
                            span.delivered(True)
                            failed += 1
                            continue
                        span.delivered(False)
                        delivered += 1
            return delivered
        finally:
            span.routed(delivered, failed)

    @staticmethod
    def _log_failure(sub: Subscriber, message: Message) -> None:
        log.exception(
            "deliver to subscriber %r (%s) failed for topic %r; continuing with the others",
            getattr(sub, "client_id", "?"),
            getattr(sub, "protocol", "?"),
            message.topic,
        )

    # -- retained --------------------------------------------------------------

    def _update_retained(self, message: Message) -> None:
        if message.payload:
            self._retained.put(message)
            self._notify_retained(message.topic, message)
        else:
            self._retained.discard(message.topic)
            self._notify_retained(message.topic, None)

    def _notify_retained(self, topic: str, message: Message | None) -> None:
        # Called even when nothing was stored locally (clearing an absent topic):
        # in a cluster another node may hold it, and replication must still hear.
        callback = self._on_retained_change
        if callback is None:
            return
        try:
            callback(topic, message)
        except Exception:
            # Routing must not fail because persistence did; the error is logged,
            # not swallowed, and the store layer owns retrying.
            log.exception("on_retained_change failed for topic %r", topic)

    def set_retained(self, message: Message) -> None:
        """Store ``message`` as its topic's retained message (an empty payload
        clears it), as a retained publish would, without delivering it."""
        self._update_retained(message)

    def clear_retained(self, topic: str) -> bool:
        """Remove the retained message of ``topic``; True if one was stored."""
        existed = self._retained.discard(topic)
        self._notify_retained(topic, None)
        return existed

    def load_retained(self, messages: Iterable[Message]) -> int:
        """Restore retained messages at start-up without reporting them back
        through ``on_retained_change`` (they came from the store). Returns how many
        were stored; empty payloads are skipped."""
        return self._retained.load(messages)

    def get_retained(self, topic: str) -> Message | None:
        """The non-expired retained message of exactly ``topic``, if any."""
        return self._retained.get(topic, self._clock())

    def retained_for(self, topic_filter: str) -> list[Message]:
        """Non-expired retained messages matching ``topic_filter`` (the inner
        filter for ``$share/...``), for delivery on subscribe. ``$``-topics are
        not returned for a leading ``+`` or ``#``."""
        shared = parse_shared(topic_filter)
        if shared is not None:
            topic_filter = shared[1]
        return self._retained.match(topic_filter, self._clock())

    @property
    def retained_count(self) -> int:
        """Stored retained messages; expired ones count until a lookup drops them."""
        return len(self._retained)
