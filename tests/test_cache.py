"""Cache files: atomic, locked, and never loaded when truncated or corrupt."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import h5py
import pytest

from envs.cache import CorruptCacheWarning, ensure_cached, is_complete, publish, temporary_path

RACE = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from envs.cache import ensure_cached

    target, log = Path(sys.argv[1]), Path(sys.argv[2])
    start_at = float(sys.argv[3])
    time.sleep(max(0.0, start_at - time.time()))  # both processes start building together

    def build(tmp):
        with log.open("a") as handle:
            handle.write("built\\n")
        with tmp.open("wb") as out:
            for _ in range(20):  # slow, chunked write: a reader would see half of it
                out.write(b"x" * 50_000)
                out.flush()
                time.sleep(0.02)

    path = ensure_cached(target, build)
    assert path.stat().st_size == 1_000_000, path.stat().st_size
    print("ok")
    """
)


def _run_together(script: str, *args: str, n: int = 2) -> list[subprocess.CompletedProcess]:
    start_at = str(time.time() + 4.0)  # after both interpreters have started
    procs = [
        subprocess.Popen([sys.executable, "-c", script, *args, start_at], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
        for _ in range(n)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_two_processes_building_one_cache_build_it_once(tmp_path: Path) -> None:
    target, log = tmp_path / "cache" / "table.bin", tmp_path / "builds.log"
    for result in _run_together(RACE, str(target), str(log)):
        assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    assert log.read_text().count("built") == 1  # the second waited on the lock and reused the file
    assert is_complete(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.bin", "table.bin.lock", "table.bin.sha256"]


TAXONOMY_RACE = textwrap.dedent(
    """
    import sys, time
    import h5py
    from envs.taxonomy.synthetic import SyntheticConfig, default_data_path

    cache, start_at = sys.argv[1], float(sys.argv[2])
    time.sleep(max(0.0, start_at - time.time()))
    labels = default_data_path(SyntheticConfig(n_samples=240, min_species_count=0, seed=3), cache_dir=cache)
    with h5py.File(labels, "r") as f:
        print(len(f["identifiers"]) if "identifiers" in f else sorted(f))
    """
)


def test_two_processes_generating_the_taxonomy_set_read_one_valid_file(tmp_path: Path) -> None:
    results = _run_together(TAXONOMY_RACE, str(tmp_path))
    for result in results:
        assert result.returncode == 0, result.stderr[-2000:]
    assert results[0].stdout == results[1].stdout
    (labels,) = tmp_path.rglob("labels.h5")
    assert is_complete(labels) and not list(tmp_path.rglob("*.tmp-*"))


def test_a_truncated_file_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    target = tmp_path / "table.bin"
    ensure_cached(target, lambda tmp: tmp.write_bytes(b"y" * 4096))
    with target.open("r+b") as handle:  # a run killed while copying the cache
        handle.truncate(1000)
    with pytest.warns(CorruptCacheWarning, match="truncated"):
        assert not is_complete(target)
    assert not target.exists()
    ensure_cached(target, lambda tmp: tmp.write_bytes(b"y" * 4096))
    assert target.stat().st_size == 4096


def test_a_corrupt_file_of_the_right_size_is_detected(tmp_path: Path) -> None:
    target = tmp_path / "table.bin"
    ensure_cached(target, lambda tmp: tmp.write_bytes(b"y" * 4096))
    time.sleep(0.01)
    target.write_bytes(b"z" * 4096)
    with pytest.warns(CorruptCacheWarning, match="checksum"):
        assert not is_complete(target)


def test_a_file_without_a_completeness_record_is_not_trusted(tmp_path: Path) -> None:
    target = tmp_path / "labels.h5"
    with h5py.File(target, "w") as f:  # e.g. written by a run killed before its rename
        f["x"] = [1, 2, 3]
    with pytest.warns(CorruptCacheWarning, match="no completeness record"):
        assert not is_complete(target)
    assert not is_complete(tmp_path / "missing.h5")  # missing: no warning, just absent


def test_a_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "table.bin"

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        ensure_cached(target, broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.bin.lock"]


def test_publish_replaces_atomically_and_records_the_new_file(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    for content in (b"old", b"new content"):
        tmp = temporary_path(target)
        tmp.write_bytes(content)
        publish(tmp, target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert is_complete(target) and target.read_bytes() == b"new content"


def test_a_forked_child_of_a_multithreaded_torch_parent_does_not_hang() -> None:
    script = textwrap.dedent(
        """
        import multiprocessing, torch
        import envs.cache  # registers the after-fork hook
        torch.set_num_threads(2)
        x = torch.randn(512, 1500)
        (x @ x.T).sum()  # the parent's OpenMP pool is running
        def child(queue):
            layer = torch.nn.Linear(1500, 1500)
            layer.load_state_dict({k: v.clone() for k, v in layer.state_dict().items()})
            queue.put(torch.get_num_threads())
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(queue,))
        proc.start()
        proc.join(60)
        print("hang" if proc.is_alive() else f"threads={queue.get()}")
        proc.kill()
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[1])
    assert proc.stdout.strip() == "threads=1", proc.stdout + proc.stderr
