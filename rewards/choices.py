"""Parse a user-given name into an enum member, with an error that lists the choices.

Every layer validates string options (splits, reward modes, backbones, ...) the same
way; this is the one helper for it. It lives in the bottom layer (``rewards``) so that
every other layer may import it.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

__all__ = ["parse_choice"]

E = TypeVar("E", bound=Enum)


def parse_choice(enum_class: type[E], value: object, field: str) -> E:
    """``enum_class(value)`` (members pass through); else ``ValueError`` naming ``field``
    and every valid value, e.g. ``split must be one of ['train', 'val', 'test'], got 'tst'``."""
    if isinstance(value, enum_class):
        return value
    try:
        return enum_class(value)
    except ValueError:
        valid = [member.value for member in enum_class]
        raise ValueError(f"{field} must be one of {valid}, got {value!r}") from None
