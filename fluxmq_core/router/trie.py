"""The subscription trie: every topic filter, indexed by level, for one-pass matching.

A filter ``a/+/c`` is stored as the path root -> ``a`` -> ``+`` -> ``c``; the node at
the end of the path holds the subscriptions on that filter. Wildcards are ordinary
child keys (``"+"`` and ``"#"``), so matching a topic of *L* levels looks up at most
three children per visited node (the literal level, ``+`` and ``#``) and its cost
grows with the number of *matching* paths, not with the number of filters, which
is what the linear scan in amqtt got wrong.

This module holds the structure and the walk only. It deliberately does not group
matches per subscriber, apply No Local, cache results or deliver: the
:class:`~fluxmq_core.router.router.Router` does that, once per topic, and caches
the outcome. It also does not validate filters; the router validates on subscribe.

Shared subscriptions (``$share/<group>/<filter>``) live at the node of their inner
filter, in a :class:`ShareGroup` per group name that also owns the round-robin
position, so a cached match result that refers to the group still advances it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fluxmq_core.router.types import Subscriber, SubscriptionOptions

__all__ = ["ShareGroup", "ShareMember", "SubEntry", "SubscriptionTrie", "TrieNode"]

#: One member of a share group as the hot path reads it:
#: (subscriber, granted qos, subscription ids, no_local).
ShareMember = tuple["Subscriber", int, tuple[int, ...], bool]


class SubEntry:
    """One subscription of one subscriber on one filter.

    ``seq`` is the router-wide subscription number; it orders subscription ids in
    a :class:`~fluxmq_core.router.types.Delivery` and survives replacement, so
    re-subscribing with new options does not reorder the ids a client sees.
    """

    __slots__ = ("options", "seq", "subscriber")

    def __init__(self, subscriber: Subscriber, options: SubscriptionOptions, seq: int) -> None:
        self.subscriber = subscriber
        self.options = options
        self.seq = seq


class ShareGroup:
    """The members of one ``$share/<name>/<filter>`` group and its round-robin turn.

    ``ring`` is rebuilt on membership change (rare) so :meth:`pick` (every publish)
    only indexes a list. Removing a member that came before the turn shifts the turn
    back so the member that was next still is: removal does not skip anyone.
    """

    __slots__ = ("members", "name", "ring", "topic_filter", "turn")

    def __init__(self, name: str, topic_filter: str) -> None:
        self.name = name
        self.topic_filter = topic_filter
        self.members: dict[int, SubEntry] = {}
        self.ring: list[ShareMember] = []
        self.turn = 0

    def _rebuild(self) -> None:
        self.ring = [
            (
                e.subscriber,
                e.options.qos,
                () if e.options.subscription_id is None else (e.options.subscription_id,),
                e.options.no_local,
            )
            for e in self.members.values()
        ]
        if self.ring:
            self.turn %= len(self.ring)
        else:
            self.turn = 0

    def put(self, key: int, entry: SubEntry) -> bool:
        """Add or replace a member; True if it was not a member before."""
        old = self.members.get(key)
        if old is not None:
            entry.seq = old.seq
        self.members[key] = entry
        self._rebuild()
        return old is None

    def discard(self, key: int) -> bool:
        """Remove a member; True if it was one."""
        if key not in self.members:
            return False
        position = list(self.members).index(key)
        del self.members[key]
        if position < self.turn:
            self.turn -= 1
        self._rebuild()
        return True

    def pick(self, origin_client: str, origin_protocol: str) -> ShareMember | None:
        """Take the next member in turn, skipping one that No Local excludes.

        MQTT forbids No Local on shared subscriptions, but other protocols might
        set it; skipping keeps the rule "never deliver to the publisher" true and
        costs one comparison per pick in the normal case. Returns None when every
        member is excluded (or the group is empty).
        """
        ring = self.ring
        n = len(ring)
        for _ in range(n):
            i = self.turn
            self.turn = i + 1 if i + 1 < n else 0
            member = ring[i]
            if member[3]:
                sub = member[0]
                if sub.client_id == origin_client and sub.protocol == origin_protocol:
                    continue
            return member
        return None

    def peek(self) -> ShareMember | None:
        """The member :meth:`pick` would take for a publish from nobody, without
        advancing the turn (for ``Router.match``)."""
        return self.ring[self.turn] if self.ring else None


class TrieNode:
    """A level of the trie. ``subs`` and ``groups`` stay None until used, because
    most nodes are interior and a dict costs more memory than a slot."""

    __slots__ = ("children", "groups", "subs")

    def __init__(self) -> None:
        self.children: dict[str, TrieNode] = {}
        self.subs: dict[int, SubEntry] | None = None
        self.groups: dict[str, ShareGroup] | None = None

    def empty(self) -> bool:
        return not self.children and not self.subs and not self.groups


class SubscriptionTrie:
    """Filters indexed by level. Subscribers are keyed by ``id(subscriber)`` so that
    subscriber objects need not be hashable; the caller keeps them alive while they
    are subscribed, which keeps the ids unique."""

    __slots__ = ("_count", "_root")

    def __init__(self) -> None:
        self._root = TrieNode()
        self._count = 0

    def __len__(self) -> int:
        """Number of subscriptions (non-shared entries plus share-group members)."""
        return self._count

    def add(
        self,
        topic_filter: str,
        key: int,
        entry: SubEntry,
        group: str | None = None,
    ) -> bool:
        """Store ``entry`` for subscriber ``key`` on ``topic_filter`` (inner filter
        for shared ones, with ``group`` set). True if new, False if it replaced an
        existing subscription of the same subscriber, filter and group."""
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = TrieNode()
            node = child
        if group is None:
            if node.subs is None:
                node.subs = {}
            old = node.subs.get(key)
            if old is not None:
                entry.seq = old.seq
            node.subs[key] = entry
            new = old is None
        else:
            if node.groups is None:
                node.groups = {}
            share = node.groups.get(group)
            if share is None:
                share = node.groups[group] = ShareGroup(group, topic_filter)
            new = share.put(key, entry)
        if new:
            self._count += 1
        return new

    def remove(self, topic_filter: str, key: int, group: str | None = None) -> bool:
        """Remove subscriber ``key`` from the filter; prune nodes left empty."""
        path: list[tuple[TrieNode, str]] = []
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                return False
            path.append((node, level))
            node = child
        if group is None:
            if not node.subs or key not in node.subs:
                return False
            del node.subs[key]
            if not node.subs:
                node.subs = None
        else:
            groups = node.groups
            share = groups.get(group) if groups else None
            if groups is None or share is None or not share.discard(key):
                return False
            if not share.members:
                del groups[group]
                if not groups:
                    node.groups = None
        self._count -= 1
        for parent, level in reversed(path):
            if not parent.children[level].empty():
                break
            del parent.children[level]
        return True

    def match(self, topic: str) -> list[TrieNode]:
        """Every node whose filter matches ``topic`` (each at most once).

        Iterative rather than recursive: no Python frame per level. A first level
        starting with ``$`` is only followed literally, so ``+``/``#`` at the root
        do not match ``$SYS/...``. A ``#`` child of the node reached at the end of
        the topic matches too: ``a/#`` matches ``a``.
        """
        levels = topic.split("/")
        n = len(levels)
        out: list[TrieNode] = []
        root = self._root
        stack: list[tuple[TrieNode, int]]
        if levels[0].startswith("$"):
            first = root.children.get(levels[0])
            if first is None:
                return out
            stack = [(first, 1)]
        else:
            stack = [(root, 0)]
        pop = stack.pop
        push = stack.append
        while stack:
            node, i = pop()
            children = node.children
            if i == n:
                if node.subs or node.groups:
                    out.append(node)
                if children:
                    multi = children.get("#")
                    if multi is not None:
                        out.append(multi)
                continue
            if not children:
                continue
            multi = children.get("#")
            if multi is not None:
                out.append(multi)
            single = children.get("+")
            if single is not None:
                push((single, i + 1))
            exact = children.get(levels[i])
            # Guard against a (not validated) topic level "+" or "#" visiting the
            # wildcard node twice.
            if exact is not None and exact is not single and exact is not multi:
                push((exact, i + 1))
        return out

    def group(self, topic_filter: str, name: str) -> ShareGroup | None:
        """The share group ``name`` stored at ``topic_filter`` (inner filter), if any."""
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                return None
            node = child
        return node.groups.get(name) if node.groups else None

    def filters(self) -> list[str]:
        """Every stored filter (inner filter for shared ones); for tests and tools."""
        out: list[str] = []
        stack: list[tuple[TrieNode, tuple[str, ...]]] = [(self._root, ())]
        while stack:
            node, path = stack.pop()
            if path and (node.subs or node.groups):
                out.append("/".join(path))
            for level, child in node.children.items():
                stack.append((child, (*path, level)))
        return out
