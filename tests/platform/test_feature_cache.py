"""FeatureCache: round trips, keying, batching of misses, corruption, LRU bound, several processes, path safety."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from polyglm.platform import feature_cache
from polyglm.platform.feature_cache import CacheOptions, FeatureCache

ENCODER = "vision:tiny-vit@sha256:0123abcd"


def make_cache(root: Path, **options) -> FeatureCache:
    return FeatureCache(CacheOptions(root=root, **options))


def key(n: int) -> str:
    return FeatureCache.content_key(f"media-{n}".encode())


def entry_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.safetensors"))


def disk_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in entry_files(root))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64])
def test_round_trip_restores_dtype_and_shape(tmp_path, dtype):
    cache = make_cache(tmp_path)
    features = (torch.randn(3, 4, 5) * 10).to(dtype)
    cache.put(ENCODER, key(1), features)

    restored = cache.get(ENCODER, key(1))

    assert restored is not None
    assert restored.dtype == dtype
    assert restored.shape == (3, 4, 5)
    torch.testing.assert_close(restored, features, atol=0.05, rtol=0.01)
    stored = load_file(entry_files(tmp_path)[0])["features"]
    assert stored.dtype == (torch.int64 if dtype == torch.int64 else torch.float16)  # floats halved on disk


def test_missing_entry_is_a_miss(tmp_path):
    cache = make_cache(tmp_path)

    assert cache.get(ENCODER, key(1)) is None
    assert cache.stats() == {"hits": 0, "misses": 1, "entries": 0, "bytes": 0, "evictions": 0}


def test_different_encoders_do_not_collide(tmp_path):
    cache = make_cache(tmp_path)
    cache.put("vision:a@sha256:1", key(1), torch.zeros(4))
    cache.put("vision:a@sha256:2", key(1), torch.ones(4))

    assert torch.equal(cache.get("vision:a@sha256:1", key(1)), torch.zeros(4))
    assert torch.equal(cache.get("vision:a@sha256:2", key(1)), torch.ones(4))
    assert len(entry_files(tmp_path)) == 2


def test_get_or_compute_computes_only_the_misses_once_in_order(tmp_path):
    cache = make_cache(tmp_path)
    items = [f"media-{n}".encode() for n in range(5)]
    cache.put(ENCODER, key(1), torch.full((2,), 1.0))
    cache.put(ENCODER, key(3), torch.full((2,), 3.0))
    calls: list[list[int]] = []

    def compute(indices: list[int]) -> list[torch.Tensor]:
        calls.append(indices)
        return [torch.full((2,), float(index)) for index in indices]

    results = cache.get_or_compute(ENCODER, items, compute)

    assert calls == [[0, 2, 4]]
    assert [result[0].item() for result in results] == [0.0, 1.0, 2.0, 3.0, 4.0]
    again = cache.get_or_compute(ENCODER, items, lambda indices: pytest.fail(f"recomputed {indices}"))
    assert all(torch.equal(first, second) for first, second in zip(results, again, strict=True))


def test_get_or_compute_returns_misses_exactly_as_later_hits(tmp_path):
    cache = make_cache(tmp_path)
    features = torch.randn(8, dtype=torch.float32) / 3  # not representable in float16

    computed = cache.get_or_compute(ENCODER, [b"x"], lambda indices: [features])[0]

    assert computed.dtype == torch.float32
    assert torch.equal(computed, cache.get(ENCODER, FeatureCache.content_key(b"x")))


def test_get_or_compute_encodes_a_repeated_item_once(tmp_path):
    cache = make_cache(tmp_path)
    calls: list[list[int]] = []

    def compute(indices: list[int]) -> list[torch.Tensor]:
        calls.append(indices)
        return [torch.full((2,), float(index)) for index in indices]

    results = cache.get_or_compute(ENCODER, [b"a", b"b", b"a"], compute)

    assert calls == [[0, 1]]
    assert torch.equal(results[0], results[2])
    assert results[0] is not results[2]  # repeats are copies, safe to modify in place


def test_get_or_compute_rejects_a_wrong_number_of_results(tmp_path):
    cache = make_cache(tmp_path)
    with pytest.raises(ValueError, match="1 tensors for 2 missing items"):
        cache.get_or_compute(ENCODER, [b"a", b"b"], lambda indices: [torch.zeros(1)])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda blob: blob[: len(blob) // 2], id="truncated"),
        pytest.param(lambda blob: b"", id="empty"),
        pytest.param(lambda blob: b"\xff" * len(blob), id="garbage"),
    ],
)
def test_corrupt_file_is_a_miss_and_is_removed(tmp_path, damage):
    make_cache(tmp_path).put(ENCODER, key(1), torch.randn(16))
    (path,) = entry_files(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    cache = make_cache(tmp_path)  # a fresh process's view: it meets the damaged file first

    assert cache.get(ENCODER, key(1)) is None
    assert not path.exists()
    assert cache.stats() == {"hits": 0, "misses": 1, "entries": 0, "bytes": 0, "evictions": 0}
    cache.put(ENCODER, key(1), torch.ones(16))
    assert torch.equal(cache.get(ENCODER, key(1)), torch.ones(16))
    assert cache.stats()["entries"] == 1


def test_eviction_keeps_the_bound_and_drops_the_least_recently_used(tmp_path):
    probe = make_cache(tmp_path / "probe")
    probe.put(ENCODER, key(0), torch.randn(500))
    entry_size = probe.stats()["bytes"]
    max_bytes = int(entry_size * 3.5)
    cache = make_cache(tmp_path / "cache", max_bytes=max_bytes)
    for n in range(3):
        cache.put(ENCODER, key(n), torch.randn(500))

    assert cache.get(ENCODER, key(0)) is not None  # 0 is now more recent than 1 and 2
    cache.put(ENCODER, key(3), torch.randn(500))

    assert cache.get(ENCODER, key(1)) is None
    assert all(cache.get(ENCODER, key(n)) is not None for n in (0, 2, 3))
    assert cache.stats()["evictions"] == 1
    for n in range(4, 20):
        cache.put(ENCODER, key(n), torch.randn(500))
        assert disk_bytes(tmp_path / "cache") <= max_bytes
    assert cache.stats()["bytes"] == disk_bytes(tmp_path / "cache")


def test_entry_larger_than_the_bound_is_returned_but_not_stored(tmp_path):
    cache = make_cache(tmp_path, max_bytes=1000)
    cache.put(ENCODER, key(0), torch.randn(100))

    result = cache.get_or_compute(ENCODER, [b"big"], lambda indices: [torch.ones(10_000)])

    assert torch.equal(result[0], torch.ones(10_000))
    assert [path.stem for path in entry_files(tmp_path)] == [key(0)]


def test_a_new_cache_sees_entries_written_before_and_clear_removes_them(tmp_path):
    writer = make_cache(tmp_path)
    for n in range(3):
        writer.put(ENCODER, key(n), torch.randn(10))

    reader = make_cache(tmp_path)
    assert reader.stats()["entries"] == 3
    assert reader.stats()["bytes"] == disk_bytes(tmp_path)

    reader.clear()
    assert entry_files(tmp_path) == []
    assert reader.stats()["entries"] == 0
    assert writer.get(ENCODER, key(0)) is None


@pytest.mark.parametrize("encoder_id", ["../../outside", "/etc/passwd", "a/../../../b", "..", "", "x\x00y"])
def test_encoder_id_cannot_escape_the_root(tmp_path, encoder_id):
    root = tmp_path / "features"
    cache = make_cache(root)
    cache.put(encoder_id, key(1), torch.ones(2))

    assert torch.equal(cache.get(encoder_id, key(1)), torch.ones(2))
    assert [path.name for path in tmp_path.iterdir()] == ["features"]
    assert all(path.resolve().is_relative_to(root.resolve()) for path in root.rglob("*"))


@pytest.mark.parametrize("bad_key", ["../../etc/passwd", "ab", key(1).upper(), key(1) + "/x"])
def test_content_key_must_be_a_sha256_digest(tmp_path, bad_key):
    cache = make_cache(tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        cache.get(ENCODER, bad_key)
    with pytest.raises(ValueError, match="sha256"):
        cache.put(ENCODER, bad_key, torch.ones(1))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"dtype": "int8"}, "floating"), ({"dtype": "fp17"}, "dtype"), ({"max_bytes": 0}, "positive")],
)
def test_bad_options_are_rejected(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        CacheOptions(root=tmp_path, **options)


# -- several processes ------------------------------------------------------------------------------

SHARED_KEYS = 8
OWN_KEYS = 16
CONCURRENT_MAX_BYTES = 100_000  # ~12 entries of 64x64 float16: far fewer than written, so eviction runs constantly


def report_torn_file(path: Path, inode: int) -> bool:
    raise AssertionError(f"a reader saw a torn or corrupt file: {path}")


def hammer_cache(root: str, worker: int, barrier, seconds: float) -> None:
    """One process: for `seconds`, alternately write shared and own keys, reading shared keys between."""
    feature_cache.remove_if_same_file = report_torn_file  # this process only: a torn read fails the worker
    cache = make_cache(Path(root), max_bytes=CONCURRENT_MAX_BYTES)
    shared = [key(n) for n in range(SHARED_KEYS)]
    own = [key(1000 * (worker + 1) + n) for n in range(OWN_KEYS)]
    barrier.wait(timeout=60)  # start together so the writes really overlap
    deadline = time.monotonic() + seconds
    step = 0
    while time.monotonic() < deadline:
        target = shared[step % SHARED_KEYS] if step % 2 == 0 else own[step % OWN_KEYS]
        cache.put(ENCODER, target, torch.full((64, 64), float(step)))
        features = cache.get(ENCODER, shared[(step * 3) % SHARED_KEYS])
        if features is not None:
            assert features.shape == (64, 64) and features.dtype == torch.float32
            assert bool((features == features[0, 0]).all())  # one writer's tensor, never a mix
        step += 1


def test_concurrent_processes_never_tear_or_crash(tmp_path):
    # forkserver, like spawn, starts workers from a fresh interpreter (nothing inherited from pytest), but
    # imports torch once for all four: spawn costs ~2.5 s of torch import per worker, too slow on small CI boxes.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    barrier = context.Barrier(4)
    workers = [context.Process(target=hammer_cache, args=(str(tmp_path), n, barrier, 1.0)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    files = entry_files(tmp_path)
    assert files
    for path in files:
        assert load_file(path)["features"].shape == (64, 64)
    assert not [path for path in tmp_path.rglob("*.tmp")]  # every writer finished or cleaned up its temp file
