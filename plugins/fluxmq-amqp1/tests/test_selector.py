"""JMS selectors: the grammar, three-valued logic, and errors."""

from __future__ import annotations

from typing import Any

import pytest
from fluxmq_amqp1.codec.composites import Data, Header, Properties
from fluxmq_amqp1.codec.message import AMQPMessage
from fluxmq_amqp1.selector import SelectorError, compile_selector, selector_env
from hypothesis import given, settings
from hypothesis import strategies as st

ENV = {"color": "red", "size": 7, "weight": 2.5, "ok": True, "name": "it's", "code": "A_1"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("color = 'red'", True),
        ("color <> 'red'", False),
        ("size > 5 AND weight < 3", True),
        ("size > 5 AND missing = 1", None),
        ("size > 50 AND missing = 1", False),
        ("size > 5 OR missing = 1", True),
        ("NOT (size > 5)", False),
        ("NOT missing = 1", None),
        ("size BETWEEN 7 AND 9", True),
        ("size NOT BETWEEN 1 AND 6", True),
        ("color IN ('green', 'red')", True),
        ("color NOT IN ('green', 'red')", False),
        ("missing IN ('a')", None),
        ("name LIKE 'it''_'", True),
        ("code LIKE 'A\\_%' ESCAPE '\\'", True),
        ("code LIKE 'B%'", False),
        ("color NOT LIKE 'r%'", False),
        ("missing IS NULL", True),
        ("color IS NOT NULL", True),
        ("size * 2 + 1 = 15", True),
        ("-size < 0", True),
        ("size / 2 = 3", True),
        ("weight / 0 = 1", None),
        ("ok = TRUE", True),
        ("color = 7", None),
        ("color > 'a'", None),
        ("size = 7.0", True),
        ("(color = 'red' OR color = 'blue') AND size >= 7", True),
        ("1e1 = 10", True),
    ],
)
def test_selector_grammar_and_logic(text: str, expected: Any) -> None:
    sel = compile_selector(text)
    assert sel.evaluate(ENV) is expected
    assert sel.matches(ENV) is (expected is True)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "color =",
        "color = 'red",
        "size BETWEEN 1",
        "x IN ()",
        "x LIKE 5",
        "a NOT = 1",
        "(a = 1",
        "a = 1 b",
        "#",
        "x LIKE 'a' ESCAPE 'ab'",
    ],
)
def test_selector_syntax_errors(text: str) -> None:
    with pytest.raises(SelectorError):
        compile_selector(text)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(SelectorError):
        compile_selector("(" * 3000 + "a = 1" + ")" * 3000)


def test_jms_header_fields_from_an_amqp_message() -> None:
    msg = AMQPMessage(
        [Data(b"x")],
        header=Header(durable=True, priority=7),
        properties=Properties(message_id="m-1", correlation_id="c-9", subject="order"),
        application_properties={"region": "eu"},
    )
    env = selector_env(msg)
    sel = compile_selector(
        "JMSPriority > 5 AND JMSDeliveryMode = 'PERSISTENT' AND JMSMessageID = 'm-1' "
        "AND JMSCorrelationID = 'c-9' AND JMSType = 'order' AND region = 'eu'"
    )
    assert sel.matches(env)


_atoms = st.sampled_from(
    ["color", "size", "weight", "ok", "missing", "'red'", "'x''y'", "7", "2.5", "1e3", "TRUE",
     "NULL", "(", ")", "=", "<>", "<", ">=", "+", "-", "*", "/", "AND", "OR", "NOT", "BETWEEN",
     "IN", "LIKE", "ESCAPE", "IS", ",", "'%'", "'_'"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_atoms, max_size=14).map(" ".join) | st.text(max_size=40))
def test_selector_parser_raises_only_selector_errors(text: str) -> None:
    try:
        sel = compile_selector(text)
    except SelectorError:
        return
    result = sel.evaluate(ENV)  # evaluating never raises either
    assert result is None or isinstance(result, bool | int | float | str)
    assert sel.matches(ENV) is (result is True)
