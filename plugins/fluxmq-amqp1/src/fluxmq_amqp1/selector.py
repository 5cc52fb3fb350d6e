"""JMS message selectors (the SQL-92 subset of JMS 2.0, section 3.8.1), as AMQP 1.0
clients send them in the ``apache.org:selector-filter:string`` source filter.

Sans-IO: :func:`compile_selector` parses the text once into a tree of closures;
``selector.matches(message)`` evaluates it against an AMQP message's application
properties and the JMS header fields mapped onto AMQP (``JMSMessageID`` =
message-id, ``JMSCorrelationID`` = correlation-id, ``JMSPriority`` = header
priority, ``JMSDeliveryMode`` = ``'PERSISTENT'`` when durable else
``'NON_PERSISTENT'``, ``JMSTimestamp`` = creation-time, ``JMSType`` = subject).

Supported: ``OR``, ``AND``, ``NOT``; ``=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``;
``+ - * /`` and unary ``+ -``; ``[NOT] BETWEEN .. AND ..``; ``[NOT] IN ('a', ..)``;
``[NOT] LIKE 'pattern' [ESCAPE 'c']``; ``IS [NOT] NULL``; string literals in single
quotes (``''`` for a quote), integers, decimals and exponents, ``TRUE``/``FALSE``;
parentheses. SQL's three-valued logic: an unknown property makes a comparison
unknown, and a message is selected only when the whole expression is true.
Syntax errors raise :class:`SelectorError` (a ``ValueError``) naming the position.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

__all__ = ["Selector", "SelectorError", "compile_selector"]

Env = dict[str, Any]
Node = Callable[[Env], Any]

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)[lLfFdD]?"
    r"|(?P<str>'(?:[^']|'')*')"
    r"|(?P<op><>|<=|>=|[=<>+\-*/(),])"
    r"|(?P<id>[A-Za-z_$][A-Za-z0-9_$.]*)"
    r")"
)
_KEYWORDS = {
    "AND", "OR", "NOT", "BETWEEN", "IN", "LIKE", "ESCAPE", "IS", "NULL", "TRUE", "FALSE",
}  # fmt: skip


class SelectorError(ValueError):
    """A selector that does not parse."""


class Selector:
    """A compiled selector; :meth:`matches` is true only when the expression is."""

    __slots__ = ("text", "_root")

    def __init__(self, text: str, root: Node) -> None:
        self.text = text
        self._root = root

    def evaluate(self, env: Env) -> Any:
        return self._root(env)

    def matches(self, env: Env) -> bool:
        return self._root(env) is True

    def __repr__(self) -> str:
        return f"Selector({self.text!r})"


def _tokens(text: str) -> list[tuple[str, Any, int]]:
    out: list[tuple[str, Any, int]] = []
    pos = 0
    n = len(text)
    while pos < n:
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SelectorError(f"unexpected character at {pos}: {text[pos : pos + 10]!r}")
        start = m.start(m.lastgroup) if m.lastgroup else pos
        if m.group("num") is not None:
            raw = m.group("num")
            value: Any = float(raw) if any(c in raw for c in ".eE") else int(raw)
            out.append(("lit", value, start))
        elif m.group("str") is not None:
            out.append(("lit", m.group("str")[1:-1].replace("''", "'"), start))
        elif m.group("op") is not None:
            out.append(("op", m.group("op"), start))
        else:
            word = m.group("id")
            up = word.upper()
            if up in ("TRUE", "FALSE"):
                out.append(("lit", up == "TRUE", start))
            elif up in _KEYWORDS:
                out.append(("kw", up, start))
            else:
                out.append(("id", word, start))
        pos = m.end()
    out.append(("end", None, n))
    return out


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True


def _or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    if a is None or b is None:
        return None
    return False


def _kind(v: Any) -> str | None:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "num"
    if isinstance(v, str):
        return "str"
    return None


def _compare(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    kind = _kind(a)
    if kind is None or kind != _kind(b):
        return None  # different types: unknown (JMS: not selected)
    if kind != "num" and op not in ("=", "<>"):
        return None  # strings and booleans compare only for (in)equality
    if op == "=":
        return a == b
    if op == "<>":
        return a != b
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _arith(op: str, a: Any, b: Any) -> Any:
    if not (_num(a) and _num(b)):
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        return None
    return a / b if isinstance(a, float) or isinstance(b, float) else a // b


def _like(pattern: str, escape: str | None) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escape is not None and c == escape and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _bin(f: Callable[[Any, Any], Any], a: Node, b: Node) -> Node:
    """A node applying ``f`` to the values of two nodes."""

    def node(e: Env) -> Any:
        return f(a(e), b(e))

    return node


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, Any, int]:
        return self.toks[self.i]

    def take(self) -> tuple[str, Any, int]:
        t = self.toks[self.i]
        self.i += 1
        return t

    def accept(self, kind: str, value: Any = None) -> bool:
        k, v, _ = self.peek()
        if k == kind and (value is None or v == value):
            self.i += 1
            return True
        return False

    def expect(self, kind: str, value: Any = None) -> tuple[str, Any, int]:
        t = self.peek()
        if t[0] != kind or (value is not None and t[1] != value):
            want = value or kind
            raise SelectorError(
                f"expected {want} at {t[2]}, found {t[1] if t[1] is not None else 'the end'}"
            )
        return self.take()

    def parse(self) -> Node:
        node = self.or_expr()
        self.expect("end")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.accept("kw", "OR"):
            left, right = node, self.and_expr()
            node = _bin(_or, left, right)
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.accept("kw", "AND"):
            left, right = node, self.not_expr()
            node = _bin(_and, left, right)
        return node

    def not_expr(self) -> Node:
        if self.accept("kw", "NOT"):
            inner = self.not_expr()
            return lambda e: None if (v := inner(e)) is None else not v
        return self.comparison()

    def comparison(self) -> Node:
        left = self.additive()
        k, v, _ = self.peek()
        if k == "op" and v in ("=", "<>", "<", "<=", ">", ">="):
            self.take()
            right = self.additive()
            return _bin(functools.partial(_compare, v), left, right)
        negate = self.accept("kw", "NOT")
        if self.accept("kw", "BETWEEN"):
            low = self.additive()
            self.expect("kw", "AND")
            high = self.additive()

            def between(e: Env) -> Any:
                x = left(e)
                r = _and(_compare(">=", x, low(e)), _compare("<=", x, high(e)))
                return r if r is None or not negate else not r

            return between
        if self.accept("kw", "IN"):
            self.expect("op", "(")
            values = [self.expect("lit")[1]]
            while self.accept("op", ","):
                values.append(self.expect("lit")[1])
            self.expect("op", ")")

            def within(e: Env) -> Any:
                x = left(e)
                if x is None:
                    return None
                r = any(_compare("=", x, v) is True for v in values)
                return not r if negate else r

            return within
        if self.accept("kw", "LIKE"):
            pattern = self.expect("lit")[1]
            escape = None
            if self.accept("kw", "ESCAPE"):
                escape = self.expect("lit")[1]
                if not isinstance(escape, str) or len(escape) != 1:
                    raise SelectorError("ESCAPE takes one character")
            if not isinstance(pattern, str):
                raise SelectorError("LIKE takes a string pattern")
            rx = _like(pattern, escape)

            def like(e: Env) -> Any:
                x = left(e)
                if not isinstance(x, str):
                    return None
                r = rx.fullmatch(x) is not None
                return not r if negate else r

            return like
        if negate:
            t = self.peek()
            raise SelectorError(f"expected BETWEEN, IN or LIKE after NOT at {t[2]}")
        if self.accept("kw", "IS"):
            is_not = self.accept("kw", "NOT")
            self.expect("kw", "NULL")
            return lambda e: (left(e) is None) != is_not
        return left

    def additive(self) -> Node:
        node = self.multiplicative()
        while True:
            k, v, _ = self.peek()
            if k == "op" and v in ("+", "-"):
                self.take()
                left, right = node, self.multiplicative()
                node = _bin(functools.partial(_arith, v), left, right)
            else:
                return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while True:
            k, v, _ = self.peek()
            if k == "op" and v in ("*", "/"):
                self.take()
                left, right = node, self.unary()
                node = _bin(functools.partial(_arith, v), left, right)
            else:
                return node

    def unary(self) -> Node:
        if self.accept("op", "-"):
            inner = self.unary()
            return lambda e: -v if _num(v := inner(e)) else None
        if self.accept("op", "+"):
            return self.unary()
        return self.primary()

    def primary(self) -> Node:
        k, v, pos = self.take()
        if k == "lit":
            return lambda e: v
        if k == "id":
            return lambda e: e.get(v)
        if k == "op" and v == "(":
            node = self.or_expr()
            self.expect("op", ")")
            return node
        raise SelectorError(f"unexpected {v if v is not None else 'end'} at {pos}")


def compile_selector(text: str) -> Selector:
    """Parse ``text`` (raises :class:`SelectorError`)."""
    if not isinstance(text, str) or not text.strip():
        raise SelectorError("an empty selector")
    if len(text) > 4096:
        raise SelectorError("a selector longer than 4096 characters")
    try:
        selector = Selector(text, _Parser(text).parse())
        selector.evaluate({})  # a tree too deep to evaluate fails here, not on delivery
    except RecursionError:
        raise SelectorError("a selector nested too deeply") from None
    return selector


def selector_env(message: Any) -> Env:
    """The names a selector sees for an AMQP message (``AMQPMessage``)."""
    env: Env = {}
    ap = message.application_properties
    if ap:
        for k, v in ap.items():
            if isinstance(k, str):
                env[k] = v
    p = message.properties
    if p is not None:
        env["JMSMessageID"] = p.message_id if not isinstance(p.message_id, bytes) else None
        env["JMSCorrelationID"] = (
            p.correlation_id if not isinstance(p.correlation_id, bytes) else None
        )
        env["JMSTimestamp"] = p.creation_time
        env["JMSType"] = p.subject
    h = message.header
    env["JMSPriority"] = int(h.priority) if h is not None else 4
    env["JMSDeliveryMode"] = "PERSISTENT" if h is not None and h.durable else "NON_PERSISTENT"
    for k, v in list(env.items()):
        if v is not None and not isinstance(v, bool | int | float | str):
            env[k] = str(v)  # uuid, symbols and the like compare as text
    return env
