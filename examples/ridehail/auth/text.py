"""What a person may type into an account: no character that shows one thing and stores
another.

An address with U+202E RIGHT-TO-LEFT OVERRIDE displays reversed (``ada<U+202E>gro.evil``
reads as ``adalive.org``), a zero-width space makes two addresses look alike, a control
character breaks logs and terminals. Emails refuse every character of Unicode's "other"
categories (C*: controls, formats such as the bidi overrides and isolates and the
zero-width characters, surrogates, private use, unassigned) and the line and paragraph
separators. Names refuse the same, except the two joiners (U+200C, U+200D) that Persian,
Indic scripts and emoji sequences need to be written at all.

Hand-written over ``unicodedata`` rather than a validation library: the check is the
categories themselves (email-validator's own check is the same idea), and ridehail's
email rule is deliberately shape-only (an address is proven by a confirmation mail).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

JOINERS = frozenset("\u200c\u200d")
"""ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER: letter shaping, not disguise."""


def _hidden(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] == "C" or category in ("Zl", "Zp")


def refuse_hidden(*, allow: frozenset[str] = frozenset()) -> Callable[[str], str]:
    """A pydantic after-validator refusing the first invisible or control character
    (``allow`` excepted), named in the message: ``U+202E RIGHT-TO-LEFT OVERRIDE``."""

    def check(value: str) -> str:
        for ch in value:
            if ch not in allow and _hidden(ch):
                name = unicodedata.name(ch, "an unnamed character")
                raise ValueError(
                    f"contains U+{ord(ch):04X} {name}, an invisible or control character"
                )
        return value

    return check
