"""The retained-message index: the last retained message per topic, found by filter.

A new subscription asks "which retained messages match ``a/+/c``?" (or ``#``). A
dict answers that only by scanning every retained topic, so topic names are also
kept in a trie of levels and the filter walks it: ``+`` visits the children of one
node, ``#`` the subtree below one node, a literal level one child. The dict stays
beside the trie for exact get, count and iteration.

MQTT rules honoured: a filter whose first level is ``+`` or ``#`` does not return
``$``-topics; ``a/#`` returns ``a`` too. Expired messages are never returned and
are removed when a lookup meets them (lazily; there is no sweeper task here).

Deliberately not here: persistence and replication (the router reports each change
through ``on_retained_change`` and the storage / cluster layers act on it), the
"empty payload clears" rule of a publish (the router applies it), and validation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fluxmq_core.message import Message

__all__ = ["RetainedStore"]


class _Node:
    __slots__ = ("children", "message")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.message: Message | None = None


class RetainedStore:
    """Retained messages by topic, with wildcard lookup.

    Times are passed in (``now``) rather than read from a clock so that the store
    stays a plain data structure that tests drive with any time they like.
    """

    __slots__ = ("_by_topic", "_root")

    def __init__(self) -> None:
        self._root = _Node()
        self._by_topic: dict[str, Message] = {}

    def __len__(self) -> int:
        """Stored entries, including expired ones not yet met by a lookup."""
        return len(self._by_topic)

    def __contains__(self, topic: object) -> bool:
        return topic in self._by_topic

    def __iter__(self) -> Iterator[Message]:
        """Every stored message, expired or not (for snapshots and tooling)."""
        return iter(list(self._by_topic.values()))

    def get(self, topic: str, now: float | None = None) -> Message | None:
        """The retained message of exactly ``topic``; expired ones are dropped
        when ``now`` is given."""
        message = self._by_topic.get(topic)
        if message is not None and now is not None and message.expired(now):
            self.discard(topic)
            return None
        return message

    def put(self, message: Message) -> None:
        """Store ``message`` as the retained message of its topic (replacing)."""
        topic = message.topic
        if topic not in self._by_topic:
            node = self._root
            for level in topic.split("/"):
                child = node.children.get(level)
                if child is None:
                    child = node.children[level] = _Node()
                node = child
            node.message = message
        else:
            existing = self._node(topic)
            assert existing is not None  # _by_topic holds exactly the topics with a node
            existing.message = message
        self._by_topic[topic] = message

    def discard(self, topic: str) -> bool:
        """Remove the retained message of ``topic``; True if there was one."""
        if self._by_topic.pop(topic, None) is None:
            return False
        path: list[tuple[_Node, str]] = []
        node = self._root
        for level in topic.split("/"):
            path.append((node, level))
            node = node.children[level]
        node.message = None
        for parent, level in reversed(path):
            child = parent.children[level]
            if child.children or child.message is not None:
                break
            del parent.children[level]
        return True

    def load(self, messages: Iterable[Message]) -> int:
        """Bulk-store messages (start-up restore); empty payloads are skipped since
        they would mean "no retained message". Returns how many were stored."""
        count = 0
        for message in messages:
            if message.payload:
                self.put(message)
                count += 1
        return count

    def clear(self) -> None:
        self._root = _Node()
        self._by_topic.clear()

    def _node(self, topic: str) -> _Node | None:
        node = self._root
        for level in topic.split("/"):
            child = node.children.get(level)
            if child is None:
                return None
            node = child
        return node

    def match(self, topic_filter: str, now: float | None = None) -> list[Message]:
        """Retained messages whose topic matches ``topic_filter`` (not expired at
        ``now`` if given), in no particular but deterministic order.

        ``topic_filter`` must be a plain filter: strip ``$share/<group>/`` first.
        """
        levels = topic_filter.split("/")
        n = len(levels)
        found: list[Message] = []
        # (node, index of the next filter level); index 0 only for the root.
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            if i == n:
                if node.message is not None:
                    found.append(node.message)
                continue
            level = levels[i]
            if level == "#":
                # '#' matches the parent level too ('a/#' returns 'a'); the root
                # has no message, so i == 0 needs no special case for that.
                if node.message is not None:
                    found.append(node.message)
                self._subtree(node, i == 0, found)
            elif level == "+":
                for name, child in node.children.items():
                    if i == 0 and name.startswith("$"):
                        continue
                    stack.append((child, i + 1))
            else:
                literal = node.children.get(level)
                if literal is not None:
                    stack.append((literal, i + 1))
        if now is None:
            return found
        live: list[Message] = []
        for message in found:
            if message.expired(now):
                self.discard(message.topic)
            else:
                live.append(message)
        return live

    @staticmethod
    def _subtree(node: _Node, at_root: bool, found: list[Message]) -> None:
        stack = [
            child for name, child in node.children.items() if not (at_root and name.startswith("$"))
        ]
        while stack:
            current = stack.pop()
            if current.message is not None:
                found.append(current.message)
            stack.extend(current.children.values())
