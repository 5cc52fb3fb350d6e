"""The value codec: every storable value round-trips; anything else is refused
with a message naming where it was."""

from __future__ import annotations

import pytest
from fluxmq_badgerlike.codec import decode_message, decode_value, encode_message, encode_value
from hypothesis import given
from hypothesis import strategies as st

from fluxmq_core.testing.conformance import sample_message

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(), st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(values)
def test_values_round_trip(value: object) -> None:
    assert decode_value(encode_value(value)) == value


def test_tuples_come_back_as_lists_and_big_ints_survive() -> None:
    assert decode_value(encode_value({"t": (1, 2), "big": 1 << 100, "neg": -(1 << 70)})) == {
        "t": [1, 2], "big": 1 << 100, "neg": -(1 << 70)
    }  # fmt: skip


@pytest.mark.parametrize("bad", [{"s": {1}}, {1: "x"}, [object()]])
def test_unstorable_values_are_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="session record"):
        encode_value(bad, "session record")


def test_garbage_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_value(b"s\xff\xff\xff\xffabc")
    with pytest.raises(ValueError):
        decode_value(encode_value(1) + b"x")


@given(st.integers(0, 1000), st.binary(max_size=100), st.none() | st.floats(0, 1e10))
def test_messages_round_trip(i: int, payload: bytes, expires_at: float | None) -> None:
    m = sample_message(i, payload=payload, expires_at=expires_at)
    assert decode_message(encode_message(m)) == m
    bare = sample_message(i, properties=None, user_properties=None, correlation_data=None)
    assert decode_message(encode_message(bare)) == bare
