"""The cluster subscription index: which *nodes* hold a subscription matching a topic.

A distributed driver keeps one :class:`NodeIndex` fed from its metadata store (each
node publishes the set of filters its local subscribers hold) and asks it, per
forwarded publish, which nodes to send to. It is the router's trie idea at node
granularity: filters stored level by level, a match walks only matching paths, and
answers are cached per topic until the index changes (which is rare next to
publishes).

Shared filters (``$share/<group>/<filter>``) are kept apart from plain ones: a
publish goes to *every* node with a matching plain filter, but to *one* node per
matching share group, which the driver picks from :meth:`NodeIndex.match_shared`.

What it does not do: count subscribers (a node either has a filter or not), pick
share-group members or nodes, or know which node is "this" one; the driver does.
"""

from __future__ import annotations

from collections.abc import Mapping

from fluxmq_core.router.topics import parse_shared

__all__ = ["NodeIndex"]

_NONE: frozenset[str] = frozenset()

#: One share group a topic matches: (``$share/<group>/<filter>``, ((node, members),
#: ...) for every node holding it, sorted by node so every node walks one order).
SharedMatch = tuple[str, tuple[tuple[str, int], ...]]


class _Node:
    __slots__ = ("children", "filter", "groups", "owners")

    def __init__(self, path: str = "") -> None:
        self.filter = path  # the filter this node stands for (the share key needs it)
        self.children: dict[str, _Node] = {}
        # Nodes holding the plain filter that ends here.
        self.owners: set[str] = set()
        # Share group name -> {node: its members} for ``$share/<name>/<this filter>``.
        self.groups: dict[str, dict[str, int]] = {}


class NodeIndex:
    """Filters per node, matched as a trie (plain and shared apart)."""

    __slots__ = ("_by_node", "_cache", "_cache_size", "_root", "generation")

    def __init__(self, cache_size: int = 4096) -> None:
        #: Grows with every change of the index (never repeats, not even across
        #: :meth:`clear`): a driver caching answers derived from it compares this.
        self.generation = 0
        self._root = _Node()
        self._by_node: dict[str, set[str]] = {}
        self._cache: dict[str, tuple[frozenset[str], tuple[SharedMatch, ...]]] = {}
        self._cache_size = cache_size

    def add(self, node_id: str, topic_filter: str, members: int = 1) -> bool:
        """Record that ``node_id`` holds ``topic_filter`` (with ``members`` local
        members when it is a ``$share/`` filter); True if the filter was new there."""
        held = self._by_node.setdefault(node_id, set())
        shared = parse_shared(topic_filter)
        if topic_filter in held:
            if shared is not None:
                self._set_members(node_id, shared, max(1, members))
            return False
        held.add(topic_filter)
        inner = topic_filter if shared is None else shared[1]
        node = self._root
        for level in inner.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node(
                    f"{node.filter}/{level}" if node is not self._root else level
                )
            node = child
        if shared is None:
            node.owners.add(node_id)
        else:
            node.groups.setdefault(shared[0], {})[node_id] = max(1, members)
        self._changed()
        return True

    def _set_members(self, node_id: str, shared: tuple[str, str], members: int) -> None:
        node = self._root
        for level in shared[1].split("/"):
            node = node.children[level]
        group = node.groups[shared[0]]
        if group.get(node_id) != members:
            group[node_id] = members
            self._changed()

    def remove(self, node_id: str, topic_filter: str) -> bool:
        """Forget one filter of ``node_id``; True if it was held."""
        held = self._by_node.get(node_id)
        if held is None or topic_filter not in held:
            return False
        held.discard(topic_filter)
        if not held:
            del self._by_node[node_id]
        shared = parse_shared(topic_filter)
        path: list[tuple[_Node, str]] = []
        node = self._root
        for level in (topic_filter if shared is None else shared[1]).split("/"):
            path.append((node, level))
            node = node.children[level]
        if shared is None:
            node.owners.discard(node_id)
        else:
            holders = node.groups[shared[0]]
            holders.pop(node_id, None)
            if not holders:
                del node.groups[shared[0]]
        for parent, level in reversed(path):
            child = parent.children[level]
            if child.children or child.owners or child.groups:
                break
            del parent.children[level]
        self._changed()
        return True

    def _changed(self) -> None:
        self._cache.clear()
        self.generation += 1

    def set_node(self, node_id: str, filters: Mapping[str, int] | set[str]) -> None:
        """Replace everything known about ``node_id`` (a resync); a mapping gives
        the member count of each ``$share/`` filter."""
        for f in list(self._by_node.get(node_id, ())):
            if f not in filters:
                self.remove(node_id, f)
        for f in filters:
            self.add(node_id, f, filters[f] if isinstance(filters, Mapping) else 1)

    def drop_node(self, node_id: str) -> None:
        """Forget a node entirely (it left the cluster)."""
        self.set_node(node_id, set())

    def clear(self) -> None:
        generation = self.generation
        self.__init__(self._cache_size)  # type: ignore[misc]
        self.generation = generation + 1

    def filters_of(self, node_id: str) -> set[str]:
        return set(self._by_node.get(node_id, ()))

    def shared_groups(self) -> dict[str, list[str]]:
        """``{"$share/<group>/<filter>": [node, ...]}`` for the admin API."""
        out: dict[str, list[str]] = {}
        for node, filters in self._by_node.items():
            for f in filters:
                if f.startswith("$share/"):
                    out.setdefault(f, []).append(node)
        return {k: sorted(v) for k, v in sorted(out.items())}

    @property
    def node_ids(self) -> list[str]:
        return sorted(self._by_node)

    def match(self, topic: str) -> frozenset[str]:
        """The nodes holding at least one plain filter that matches ``topic``."""
        found = self._cache.get(topic)
        if found is None:
            found = self._lookup(topic)
        return found[0]

    def match_shared(self, topic: str) -> tuple[SharedMatch, ...]:
        """Every share group matching ``topic``, with the nodes that hold members."""
        found = self._cache.get(topic)
        if found is None:
            found = self._lookup(topic)
        return found[1]

    def _lookup(self, topic: str) -> tuple[frozenset[str], tuple[SharedMatch, ...]]:
        found = self._match(topic)
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
            self._cache[topic] = found
        return found

    def _match(self, topic: str) -> tuple[frozenset[str], tuple[SharedMatch, ...]]:
        levels = topic.split("/")
        n = len(levels)
        hits: list[_Node] = []
        stack: list[tuple[_Node, int]]
        if levels[0].startswith("$"):
            first = self._root.children.get(levels[0])
            if first is None:
                return _NONE, ()
            stack = [(first, 1)]
        else:
            stack = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            children = node.children
            if i == n:
                hits.append(node)
                multi = children.get("#")
                if multi is not None:
                    hits.append(multi)
                continue
            multi = children.get("#")
            if multi is not None:
                hits.append(multi)
            single = children.get("+")
            if single is not None:
                stack.append((single, i + 1))
            exact = children.get(levels[i])
            if exact is not None and exact is not single and exact is not multi:
                stack.append((exact, i + 1))
        owners: set[str] = set()
        shares: list[SharedMatch] = []
        for node in hits:
            owners.update(node.owners)
            if node.groups:
                for name, holders in node.groups.items():
                    shares.append((f"$share/{name}/{node.filter}", tuple(sorted(holders.items()))))
        shares.sort()
        return (frozenset(owners) if owners else _NONE), tuple(shares)
