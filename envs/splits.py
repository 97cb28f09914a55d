"""The data split every data-driven env takes as ``split=``.

Test cases never appear in the train or val split of any env; each family decides how
cases are assigned (patient level, hash of the identifier, seeded problem draws).
"""

from __future__ import annotations

from enum import Enum

from rewards.choices import parse_choice

__all__ = ["Split", "parse_split"]


class Split(str, Enum):
    """Which part of a family's cases an env draws from."""

    TRAIN = "train"
    VAL = "val"
    TEST = "test"


def parse_split(value: object, field: str = "split") -> Split:
    """``Split`` from a member or its value; the error lists the valid splits."""
    return parse_choice(Split, value, field)
