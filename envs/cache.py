"""Where generated data, feature caches and default checkpoints live.

Never inside the package: the root is ``$SCIENCEGYM_CACHE`` when set, else
``$XDG_CACHE_HOME/sciencegym``, else ``~/.cache/sciencegym``. Every env that caches
something also takes a ``cache_dir`` kwarg that overrides this root.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV_VAR", "cache_root", "cache_path"]

CACHE_ENV_VAR = "SCIENCEGYM_CACHE"


def cache_root(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache root (created if missing): ``override`` > env var > XDG > home."""
    if override is not None:
        root = Path(override)
    elif os.environ.get(CACHE_ENV_VAR):
        root = Path(os.environ[CACHE_ENV_VAR])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "sciencegym"
    root = root.expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_path(*parts: str, override: str | os.PathLike[str] | None = None) -> Path:
    """A path under the cache root; parent directories are created."""
    path = cache_root(override).joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
