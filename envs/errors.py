"""Helpers for the one-line errors that loaders of user files raise.

A malformed file must fail with one line naming the file and the field; libraries'
own messages (h5py, torch, json) are multi-line or name neither, so loaders wrap them
and keep only the first line of the cause.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["first_line", "open_hdf5", "read_json", "state_dict_problems"]


def first_line(err: BaseException, limit: int = 160) -> str:
    """The first non-empty line of ``err``'s message; past ``limit`` characters, its first
    sentence (torch follows what failed with a paragraph of advice), else cut at ``limit``."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    if len(text) <= limit:
        return text
    end = text.find(". ")
    return text[:end] if 0 < end < limit else text[: limit - 3] + "..."


def state_dict_problems(expected: Mapping[str, Any], state: Mapping[str, Any], shown: int = 3) -> str | None:
    """Why the weights ``state`` do not fit a module whose ``state_dict()`` is ``expected``
    (missing keys, unexpected keys, shape mismatches, a few of each named), or None if they
    fit. torch's own ``load_state_dict`` error lists every key over many lines."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(getattr(state[k], 'shape', ()))} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in state and tuple(getattr(state[k], "shape", ())) != tuple(v.shape)
    )

    def listing(keys: list[str]) -> str:
        return ", ".join(keys[:shown]) + (f", ... ({len(keys)} in all)" if len(keys) > shown else "")

    problems = [f"{label} {listing(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if keys]
    return "; ".join(problems) or None


@contextmanager
def open_hdf5(path: Path, error: type[Exception], what: str = "HDF5 file") -> Iterator[Any]:
    """``path`` opened read-only with h5py. A file HDF5 cannot open (truncated, not HDF5 at
    all) raises ``error`` naming it, not h5py's bare ``OSError``."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise error(f"{path}: not a readable {what} ({first_line(err)})") from None
    with f:
        yield f


def read_json(path: Path, error: type[Exception], expected: str) -> dict[str, Any]:
    """The JSON object in ``path``; unparsable text or another JSON type raises ``error``
    naming the file (``expected`` says what the object should hold)."""
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: not a readable JSON file ({first_line(err)})") from None
    if not isinstance(data, Mapping):
        raise error(f"{path}: expected a JSON object with {expected}, got {type(data).__name__}")
    return dict(data)
