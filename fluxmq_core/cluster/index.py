"""The cluster subscription index: which *nodes* hold a subscription matching a topic.

A distributed driver keeps one :class:`NodeIndex` fed from its metadata store (each
node publishes the set of filters its local subscribers hold) and asks it, per
forwarded publish, which nodes to send to. It is the router's trie idea at node
granularity: filters stored level by level, a match walks only matching paths, and
answers are cached per topic until the index changes (which is rare next to
publishes).

What it does not do: count subscribers (a node either has a filter or not), pick
share-group members, or know which node is "this" one; the driver does those.
"""

from __future__ import annotations

from fluxmq_core.router.topics import strip_share

__all__ = ["NodeIndex"]

_NONE: frozenset[str] = frozenset()


class _Node:
    __slots__ = ("children", "owners")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        # node id -> how many of that node's filters end here ($share/a/x and x
        # both end at x).
        self.owners: dict[str, int] = {}


class NodeIndex:
    """Filters per node, matched as a trie; ``$share/<g>/`` prefixes are stripped
    for matching (the group takes no part in which topics reach a node)."""

    __slots__ = ("_by_node", "_cache", "_cache_size", "_root")

    def __init__(self, cache_size: int = 4096) -> None:
        self._root = _Node()
        self._by_node: dict[str, set[str]] = {}
        self._cache: dict[str, frozenset[str]] = {}
        self._cache_size = cache_size

    def add(self, node_id: str, topic_filter: str) -> bool:
        """Record that ``node_id`` holds ``topic_filter``; True if it was new."""
        held = self._by_node.setdefault(node_id, set())
        if topic_filter in held:
            return False
        held.add(topic_filter)
        node = self._root
        for level in strip_share(topic_filter).split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        node.owners[node_id] = node.owners.get(node_id, 0) + 1
        self._cache.clear()
        return True

    def remove(self, node_id: str, topic_filter: str) -> bool:
        """Forget one filter of ``node_id``; True if it was held."""
        held = self._by_node.get(node_id)
        if held is None or topic_filter not in held:
            return False
        held.discard(topic_filter)
        if not held:
            del self._by_node[node_id]
        path: list[tuple[_Node, str]] = []
        node = self._root
        for level in strip_share(topic_filter).split("/"):
            path.append((node, level))
            node = node.children[level]
        left = node.owners[node_id] - 1
        if left:
            node.owners[node_id] = left
        else:
            del node.owners[node_id]
        for parent, level in reversed(path):
            child = parent.children[level]
            if child.children or child.owners:
                break
            del parent.children[level]
        self._cache.clear()
        return True

    def set_node(self, node_id: str, filters: set[str]) -> None:
        """Replace everything known about ``node_id`` (a resync)."""
        for f in list(self._by_node.get(node_id, ())):
            if f not in filters:
                self.remove(node_id, f)
        for f in filters:
            self.add(node_id, f)

    def drop_node(self, node_id: str) -> None:
        """Forget a node entirely (it left the cluster)."""
        self.set_node(node_id, set())

    def clear(self) -> None:
        self.__init__(self._cache_size)  # type: ignore[misc]

    def filters_of(self, node_id: str) -> set[str]:
        return set(self._by_node.get(node_id, ()))

    @property
    def node_ids(self) -> list[str]:
        return sorted(self._by_node)

    def match(self, topic: str) -> frozenset[str]:
        """The nodes holding at least one filter that matches ``topic``."""
        found = self._cache.get(topic)
        if found is not None:
            return found
        found = self._match(topic)
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
            self._cache[topic] = found
        return found

    def _match(self, topic: str) -> frozenset[str]:
        levels = topic.split("/")
        n = len(levels)
        out: set[str] = set()
        stack: list[tuple[_Node, int]]
        if levels[0].startswith("$"):
            first = self._root.children.get(levels[0])
            if first is None:
                return _NONE
            stack = [(first, 1)]
        else:
            stack = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            children = node.children
            if i == n:
                out.update(node.owners)
                multi = children.get("#")
                if multi is not None:
                    out.update(multi.owners)
                continue
            multi = children.get("#")
            if multi is not None:
                out.update(multi.owners)
            single = children.get("+")
            if single is not None:
                stack.append((single, i + 1))
            exact = children.get(levels[i])
            if exact is not None and exact is not single and exact is not multi:
                stack.append((exact, i + 1))
        return frozenset(out) if out else _NONE
