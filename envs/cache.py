"""Where generated data, feature caches and default checkpoints live.

Never inside the package: the root is ``$SCIENCEGYM_CACHE`` when set, else
``$XDG_CACHE_HOME/sciencegym``, else ``~/.cache/sciencegym``. Every env that caches
something also takes a ``cache_dir`` kwarg that overrides this root.

Cache files are written with :func:`publish` (atomic rename plus a size/checksum
record) under :func:`cache_lock`, and read only after :func:`is_complete`; see the
"safe writes" section below. Importing this module also makes forked workers run
torch single-threaded (see :func:`_torch_single_threaded_after_fork`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

__all__ = [
    "CACHE_ENV_VAR",
    "CorruptCacheWarning",
    "cache_lock",
    "cache_path",
    "cache_root",
    "ensure_cached",
    "is_complete",
    "publish",
    "temporary_path",
]

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


# ---------------------------------------------------------------- safe writes
#
# Two workers of one vector env, or two training runs, may build the same cache file at
# once, and a run may be killed half-way through writing one. So every cache file is
# written under a temporary name and renamed (readers never see half a file), a sidecar
# ``<name>.sha256`` records its size and checksum once it is complete (a file without a
# matching sidecar — truncated, corrupted, or left by an older version — is rebuilt with
# a warning, never loaded), and builders serialise on a ``<name>.lock`` file lock so the
# second process waits and reuses the first one's file.

CHECKSUM_SUFFIX = ".sha256"
LOCK_SUFFIX = ".lock"
LOCK_TIMEOUT_SECONDS = 3600.0
"""How long a builder waits for another process's build before giving up (an hour:
the slowest default build, Prostate-v0's decoder on one core, takes minutes)."""

_locks: dict[str, FileLock] = {}
"""This process's lock objects, by lock file (cleared in forked children)."""

_verified: dict[tuple[str, int, int], bool] = {}
"""Checksums already verified in this process, keyed by (path, size, mtime_ns)."""


class CorruptCacheWarning(UserWarning):
    """A cache file was truncated or corrupt (or has no completeness record) and is rebuilt."""


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_lock(path: str | os.PathLike[str], timeout: float = LOCK_TIMEOUT_SECONDS) -> FileLock:
    """An inter-process lock on building ``path`` (``with cache_lock(p): ...``); re-entrant."""
    lock_file = str(_sidecar(Path(path), LOCK_SUFFIX))
    lock = _locks.get(lock_file)
    if lock is None:  # one object per file: a second one in this process would wait on the first
        Path(lock_file).parent.mkdir(parents=True, exist_ok=True)
        lock = _locks[lock_file] = FileLock(lock_file, timeout=timeout)
    return lock


def publish(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Move the finished file ``tmp`` to ``path`` atomically and record it as complete.

    ``tmp`` must be on the same file system (write it next to ``path``). The data are
    flushed to disk before the rename, so a crash leaves either the old state or the
    whole new file, and the sidecar is written last, so a reader that finds it can trust
    the file it describes.
    """
    tmp, path = Path(tmp), Path(path)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    record = {"size": tmp.stat().st_size, "sha256": _sha256(tmp)}
    with cache_lock(path):
        os.replace(tmp, path)
        sidecar = _sidecar(path, CHECKSUM_SUFFIX)
        sidecar_tmp = _sidecar(path, f"{CHECKSUM_SUFFIX}.tmp-{os.getpid()}")
        sidecar_tmp.write_text(json.dumps(record) + "\n")
        os.replace(sidecar_tmp, sidecar)
    stat = path.stat()
    _verified[(str(path), stat.st_size, stat.st_mtime_ns)] = True
    return path


def _problem(path: Path) -> str | None:
    """Why ``path`` cannot be trusted, or None if it is complete."""
    sidecar = _sidecar(path, CHECKSUM_SUFFIX)
    if not sidecar.is_file():
        return "no completeness record (interrupted write or an older version)"
    try:
        record = json.loads(sidecar.read_text())
        size, checksum = int(record["size"]), str(record["sha256"])
    except (ValueError, KeyError, TypeError):
        return f"unreadable completeness record {sidecar.name}"
    stat = path.stat()
    if stat.st_size != size:
        return f"size {stat.st_size} bytes, expected {size} (truncated)"
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        _verified[key] = _sha256(path) == checksum
    return None if _verified[key] else "checksum mismatch (corrupt)"


def is_complete(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a complete cache file written by :func:`publish`.

    A file that exists but is truncated, corrupt or unrecorded is deleted with a
    :class:`CorruptCacheWarning` (so the caller rebuilds it); a missing file is simply
    False. The checksum is verified once per process and file version.
    """
    path = Path(path)
    if not path.is_file():
        return False
    with cache_lock(path):
        if not path.is_file():
            return False
        problem = _problem(path)
        if problem is None:
            return True
        warnings.warn(f"cache file {path} is not usable ({problem}); rebuilding it", CorruptCacheWarning, stacklevel=2)
        path.unlink(missing_ok=True)
        _sidecar(path, CHECKSUM_SUFFIX).unlink(missing_ok=True)
        return False


def temporary_path(path: str | os.PathLike[str]) -> Path:
    """A process-unique name next to ``path`` to write into before :func:`publish`."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def ensure_cached(path: str | os.PathLike[str], build: Callable[[Path], None]) -> Path:
    """``path``, built by ``build(tmp)`` unless a complete copy exists.

    ``build`` writes the file at the temporary path it is given. Concurrent callers
    (other processes) wait on the lock and then reuse the first build; a build that
    raises leaves nothing behind.
    """
    path = Path(path)
    if is_complete(path):
        return path
    with cache_lock(path):
        if is_complete(path):
            return path
        tmp = temporary_path(path)
        try:
            build(tmp)
            return publish(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- forked workers


def _torch_single_threaded_after_fork() -> None:
    """In a forked child, run torch on one thread (and drop the parent's cache locks).

    A child forked after the parent ran torch on its OpenMP thread pool inherits the
    pool's locks but not its threads, so the child's first parallel op (e.g. the
    ``copy_`` inside ``load_state_dict`` when an env builds its decoder) waits for ever.
    One thread per vector-env worker is also the right setting for throughput. torch is
    only touched if the parent had imported it.
    """
    _locks.clear()  # the parent's lock objects share its file descriptions; use fresh ones
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(1)


os.register_at_fork(after_in_child=_torch_single_threaded_after_fork)
