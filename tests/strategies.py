"""Hypothesis strategies shared by the property tests: names, params, bad input."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

MAX_NAME = 255

# Text PostgreSQL stores exactly: anything but NUL, control characters and surrogates.
name_chars = st.characters(blacklist_categories=("Cc", "Cs"))
control_chars = st.characters(whitelist_categories=("Cc",))
text_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")

SQL_LOOKING = [
    "'; DROP TABLE queuetopia_jobs; --",
    "q' OR '1'='1",
    '"quoted" \\ back\\slash',
    "$1 %s %(queue)s {}",
    "\\u0000",
    "%_%",
    "queuetopia_jobs",
    " leading and trailing ",
    "NULL",
]

valid_names = st.one_of(
    st.sampled_from(SQL_LOOKING),
    st.text(name_chars, min_size=1, max_size=40),
    st.text(name_chars, min_size=MAX_NAME - 5, max_size=MAX_NAME),
)


@st.composite
def names_with_a_control_char(draw: st.DrawFn) -> str:
    text = draw(st.text(name_chars, max_size=30))
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.one_of(st.just("\x00"), control_chars)) + text[at:]


invalid_names = st.one_of(
    st.just(""),
    st.text(name_chars, min_size=MAX_NAME + 1, max_size=MAX_NAME + 60),
    names_with_a_control_char(),
)

# JSON values that survive jsonb unchanged, types included. Floats stay below 1e15:
# jsonb keeps numbers as decimals, so 1e23 comes back as the integer 10**23.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(min_value=-1e15, max_value=1e15, allow_nan=False, allow_infinity=False),
    st.text(text_chars, max_size=30),
    st.sampled_from(SQL_LOOKING),
)
json_keys = st.text(text_chars, max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(json_keys, children, max_size=4)
    ),
    max_leaves=15,
)
param_names = st.text(text_chars, min_size=1, max_size=20)
json_params = st.dictionaries(param_names, json_values, max_size=5)


class Opaque:
    """An object no JSON encoder knows."""


bad_leaves = st.one_of(
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
    st.just({1, 2}),
    st.just(frozenset()),
    st.builds(Opaque),
    st.just(b"bytes"),
    st.just(1 + 2j),
    st.builds(
        lambda a, b: a + "\x00" + b,
        st.text(text_chars, max_size=5),
        st.text(text_chars, max_size=5),
    ),
    st.just("lone \ud800 surrogate"),
    st.just({"nested key with \x00 NUL": 1}),
)


def _around(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Hide a bad value among good ones, one level deeper."""
    return st.one_of(
        st.builds(
            lambda bad, good, at: [*good[:at], bad, *good[at:]],
            children,
            st.lists(json_scalars, max_size=3),
            st.integers(0, 3),
        ),
        st.builds(
            lambda bad, good, key: {**good, key: bad},
            children,
            st.dictionaries(json_keys, json_scalars, max_size=3),
            json_keys,
        ),
    )


values_with_a_bad_leaf = st.recursive(bad_leaves, _around, max_leaves=4)


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 is not 1.0, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# Passwords as people pick them: spaces, quotes, backslashes, unicode and the characters
# that delimit a DSN (@ : / = ? &), for the redaction properties (tests/test_secrets.py).
PASSWORD_LOOKING = ["a b", "it's", 'say "hi"', "p@ss:w/rd", "back\\slash\\", "ünï 密码 🔑", "=?&#"]
passwords = st.one_of(
    st.sampled_from(PASSWORD_LOOKING),
    st.text(text_chars, min_size=1, max_size=30),
    st.lists(
        st.sampled_from([*PASSWORD_LOOKING, "x", "'", '"', "\\", "@", ":", "/"]), min_size=1
    ).map("".join),
)
