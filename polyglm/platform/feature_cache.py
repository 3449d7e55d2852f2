"""Disk cache of encoder features (torch tensors), shared safely by several processes.

Layout: ``root/<sha256(encoder_id)[:32]>/<key[:2]>/<key>.safetensors``, one file per entry.

- Writers go through a temp file in the entry's own folder and ``os.replace``, so a reader in any
  process sees either the old file, the new file or nothing, never a torn one.
- A file that does not decode (a crash before the data reached disk, a foreign file) is a miss and is removed.
- The size bound is least-recently-used by file mtime, which a hit refreshes. Each process keeps a running
  total instead of walking the tree on every put; the total is refreshed from disk at first use, every
  ``RESCAN_EVERY_PUTS`` puts and on every eviction. With one process the bound is exact; with several, each
  misses the others' puts since its last refresh, so the cache can overshoot ``max_bytes`` by at most that many
  entries (in practice far fewer: every process evicts, and every eviction walks the real tree).
- Only eviction (and ``clear``) takes the ``fcntl`` lock; reads and writes never wait.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from polyglm.platform.precision import dtype_name

FORMAT_VERSION = "1"
TENSOR_NAME = "features"
ENTRY_SUFFIX = ".safetensors"
TEMP_SUFFIX = ".tmp"
LOCK_NAME = ".evict.lock"
# Other processes' writes reach our running total at least this often (one tree walk per this many puts).
RESCAN_EVERY_PUTS = 256
# Evict a little below the bound: a full cache then evicts (and walks the tree) once per many puts, not on each.
EVICT_TO_FRACTION = 0.9
# A temp file this old belongs to a writer that died mid-write; younger ones may still be in progress.
STALE_TEMP_SECONDS = 3600
_CONTENT_KEY = re.compile(r"[0-9a-f]{64}")
# What decoding a damaged or foreign file can raise: all of them mean "not a usable entry".
_CORRUPT_ENTRY_ERRORS = (SafetensorError, ValueError, KeyError, TypeError, AttributeError, RuntimeError)


@dataclass(frozen=True)
class CacheOptions:
    root: Path  # e.g. Settings.from_env().cache_dir / "features"
    max_bytes: int = 2_000_000_000  # size bound; least-recently-used entries beyond it are evicted
    dtype: str = "float16"  # storage dtype of floating features; get() restores the dtype they were put with

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError(f"CacheOptions.max_bytes must be positive, got {self.max_bytes}")
        storage_dtype(self.dtype)  # fail at construction, not at the first put


@dataclass(frozen=True)
class _Entry:
    path: Path
    size: int
    mtime_ns: int


class FeatureCache:
    """Encoder features on disk, keyed by (encoder_id, sha256 of the media bytes)."""

    def __init__(self, options: CacheOptions) -> None:
        self.options = options
        self._root = Path(options.root)
        self._storage_dtype = storage_dtype(options.dtype)
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        # Running view of the whole cache (all processes), exact right after a rescan.
        self._known_bytes = 0
        self._known_entries = 0
        self._scanned = False
        self._puts_since_scan = 0

    @staticmethod
    def content_key(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def get(self, encoder_id: str, content_key: str) -> torch.Tensor | None:
        path = self._entry_path(encoder_id, content_key)
        features = self._load(path)
        if features is None:
            self._misses += 1
            return None
        mark_recently_used(path)
        self._hits += 1
        return features

    def put(self, encoder_id: str, content_key: str, features: torch.Tensor) -> None:
        self._store(self._entry_path(encoder_id, content_key), features)

    def get_or_compute(
        self,
        encoder_id: str,
        items: Sequence[bytes],
        compute: Callable[[list[int]], list[torch.Tensor]],
    ) -> list[torch.Tensor]:
        """Features for every item, in order; ``compute`` runs once, on the indices of the misses only.

        An item repeated in ``items`` is looked up and computed once (its first index is passed).
        Computed features come back as a later hit would (CPU, rounded through the storage dtype), so a
        result never depends on whether it was cached.
        """
        keys = [self.content_key(item) for item in items]
        first_index = unique_first_indices(keys)
        found = {key: self.get(encoder_id, key) for key in first_index}
        missing = [index for key, index in first_index.items() if found[key] is None]
        if missing:
            computed = compute(missing)
            if len(computed) != len(missing):
                raise ValueError(f"compute returned {len(computed)} tensors for {len(missing)} missing items")
            for index, features in zip(missing, computed, strict=True):
                found[keys[index]] = self._store(self._entry_path(encoder_id, keys[index]), features)
        return [share_or_clone(found[key], index == first_index[key]) for index, key in enumerate(keys)]

    def stats(self) -> dict[str, int]:
        """hits, misses and evictions are this process's; entries and bytes are the whole cache's, as last seen."""
        self._ensure_scanned()
        return {
            "hits": self._hits,
            "misses": self._misses,
            "entries": self._known_entries,
            "bytes": self._known_bytes,
            "evictions": self._evictions,
        }

    def clear(self) -> None:
        # Files only, folders stay: a concurrent writer's temp file and os.replace keep a folder to land in.
        with self._eviction_lock():
            for entry in scan_entries(self._root):
                entry.path.unlink(missing_ok=True)
            self._record_full_scan(0, 0)

    # -- storage ------------------------------------------------------------------------------------

    def _entry_path(self, encoder_id: str, content_key: str) -> Path:
        if not _CONTENT_KEY.fullmatch(content_key):
            raise ValueError(f"content_key must be a sha256 hex digest (FeatureCache.content_key), got {content_key!r}")
        return self._root / encoder_dir_name(encoder_id) / content_key[:2] / f"{content_key}{ENTRY_SUFFIX}"

    def _load(self, path: Path) -> torch.Tensor | None:
        try:
            blob, inode = read_file(path)
        except FileNotFoundError:
            return None
        try:
            return decode_entry(blob)
        except _CORRUPT_ENTRY_ERRORS:
            if remove_if_same_file(path, inode):
                self._adjust_known(-len(blob), -1)
            return None

    def _store(self, path: Path, features: torch.Tensor) -> torch.Tensor:
        """Write one entry; returns the features as a later get() will return them."""
        stored = to_storage(features, self._storage_dtype)
        blob = encode_entry(stored, features.dtype)
        # An entry over the whole bound could only be kept by evicting everything else, itself included.
        if len(blob) <= self.options.max_bytes:
            self._ensure_scanned()
            replaced = file_size_or_zero(path)
            write_atomic(path, blob)
            self._adjust_known(len(blob) - replaced, 1 if replaced == 0 else 0)
            self._after_put()
        return stored.to(features.dtype)

    # -- size bound ---------------------------------------------------------------------------------

    def _after_put(self) -> None:
        self._puts_since_scan += 1
        if self._puts_since_scan >= RESCAN_EVERY_PUTS:
            self._rescan()
        if self._known_bytes > self.options.max_bytes:
            self._evict()

    def _ensure_scanned(self) -> None:
        if not self._scanned:
            self._rescan()

    def _rescan(self) -> None:
        entries = list(scan_entries(self._root))
        self._record_full_scan(sum(entry.size for entry in entries), len(entries))

    def _evict(self) -> None:
        with self._eviction_lock():
            # Walk again under the lock: another process may have evicted already, or added more.
            entries = sorted(scan_entries(self._root), key=lambda entry: (entry.mtime_ns, str(entry.path)))
            total = sum(entry.size for entry in entries)
            kept = len(entries)
            if total > self.options.max_bytes:
                target = int(self.options.max_bytes * EVICT_TO_FRACTION)
                for entry in entries:
                    if total <= target:
                        break
                    entry.path.unlink(missing_ok=True)  # a file vanishing under us is someone else's eviction
                    total -= entry.size
                    kept -= 1
                    self._evictions += 1
            remove_stale_temp_files(self._root)
            self._record_full_scan(total, kept)

    def _record_full_scan(self, total_bytes: int, entries: int) -> None:
        self._known_bytes = total_bytes
        self._known_entries = entries
        self._scanned = True
        self._puts_since_scan = 0

    def _adjust_known(self, delta_bytes: int, delta_entries: int) -> None:
        # Before the first walk there is no total to adjust; the walk will count this change itself.
        if self._scanned:
            # Clamped: another process may have removed what we count, our view only catches up at a rescan.
            self._known_bytes = max(0, self._known_bytes + delta_bytes)
            self._known_entries = max(0, self._known_entries + delta_entries)

    @contextmanager
    def _eviction_lock(self) -> Iterator[None]:
        self._root.mkdir(parents=True, exist_ok=True)
        with open(self._root / LOCK_NAME, "a") as handle:  # "a": never truncate a file another process holds
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


# -- helpers ----------------------------------------------------------------------------------------


def storage_dtype(name: str) -> torch.dtype:
    dtype = parse_dtype(name)
    if not dtype.is_floating_point:
        raise ValueError(f"CacheOptions.dtype must be a floating dtype such as 'float16', got {name!r}")
    return dtype


def parse_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"not a torch dtype: {name!r}")
    return dtype


def encoder_dir_name(encoder_id: str) -> str:
    # Hashing makes any id (slashes, "..", absolute paths, very long) one fixed-length, safe folder name.
    return hashlib.sha256(encoder_id.encode("utf-8")).hexdigest()[:32]


def unique_first_indices(keys: Sequence[str]) -> dict[str, int]:
    """Each distinct key with the index where it first occurs, in order of first occurrence."""
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    return first


def share_or_clone(features: torch.Tensor | None, first: bool) -> torch.Tensor:
    assert features is not None  # every key is either a hit or was just computed
    # Repeats get their own copy so a caller modifying one result in place does not change another.
    return features if first else features.clone()


def to_storage(features: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    stored = features.detach().to("cpu")
    if stored.is_floating_point():
        stored = stored.to(dtype)
    # Integer/bool features are kept exact: rounding them through a float type would change values.
    return stored.contiguous()


def encode_entry(stored: torch.Tensor, original_dtype: torch.dtype) -> bytes:
    metadata = {"format": FORMAT_VERSION, "dtype": dtype_name(original_dtype)}
    return save({TENSOR_NAME: stored}, metadata=metadata)


def decode_entry(blob: bytes) -> torch.Tensor:
    stored = load(blob)[TENSOR_NAME]  # validates header and length: a truncated file raises here
    metadata = read_metadata(blob)
    if metadata.get("format") != FORMAT_VERSION:
        raise ValueError(f"feature cache format {metadata.get('format')!r}, expected {FORMAT_VERSION!r}")
    return stored.to(parse_dtype(metadata["dtype"]))


def read_metadata(blob: bytes) -> dict[str, str]:
    # safetensors.torch.load drops the metadata; the header is 8 bytes of length, then JSON.
    header_length = int.from_bytes(blob[:8], "little")
    metadata = json.loads(blob[8 : 8 + header_length]).get("__metadata__")
    if not isinstance(metadata, dict):
        raise ValueError("feature cache entry has no metadata")
    return metadata


def read_file(path: Path) -> tuple[bytes, int]:
    """The file's bytes and inode (to recognise the same file later); reads fully, no mmap to go stale."""
    with open(path, "rb") as handle:
        return handle.read(), os.fstat(handle.fileno()).st_ino


def remove_if_same_file(path: Path, inode: int) -> bool:
    # A writer may have replaced the corrupt file with a good one since we read it: delete only what we read.
    try:
        if os.stat(path).st_ino != inode:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def mark_recently_used(path: Path) -> None:
    # Explicit nanosecond time: the kernel's own timestamps are coarse (~ms), too coarse to order quick hits.
    now = time.time_ns()
    # Evicted right after we read it, or a read-only cache: the hit stands, only the LRU order suffers.
    with suppress(OSError):
        os.utime(path, ns=(now, now))


def file_size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def write_atomic(path: Path, blob: bytes) -> None:
    # The temp file lives in the destination folder so os.replace is a same-filesystem, atomic rename.
    # No fsync: after a power loss the worst case is an empty or short file, which readers treat as a miss.
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(blob)
        now = time.time_ns()
        os.utime(temp_name, ns=(now, now))  # same clock as hits, so puts and hits order correctly
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def scan_entries(root: Path) -> Iterator[_Entry]:
    for item in shard_files(root):
        if item.name.endswith(ENTRY_SUFFIX) and not item.name.startswith("."):
            try:
                stat = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # evicted or cleared by another process while we walk
            yield _Entry(Path(item.path), stat.st_size, stat.st_mtime_ns)


def remove_stale_temp_files(root: Path) -> None:
    cutoff = time.time_ns() - STALE_TEMP_SECONDS * 1_000_000_000
    for item in shard_files(root):
        if item.name.startswith(".") and item.name.endswith(TEMP_SUFFIX):
            try:
                if item.stat(follow_symlinks=False).st_mtime_ns < cutoff:
                    Path(item.path).unlink(missing_ok=True)
            except FileNotFoundError:
                continue


def shard_files(root: Path) -> Iterator[os.DirEntry[str]]:
    """Plain files two folder levels below root (encoder / key prefix); the only place entries live."""
    for encoder_dir in subdirectories(root):
        for shard_dir in subdirectories(Path(encoder_dir.path)):
            for item in list_dir(Path(shard_dir.path)):
                if item.is_file(follow_symlinks=False):
                    yield item


def subdirectories(path: Path) -> Iterator[os.DirEntry[str]]:
    # Symlinked folders are not followed, so eviction and clear never reach outside root.
    return (item for item in list_dir(path) if item.is_dir(follow_symlinks=False))


def list_dir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as items:
            return list(items)
    except (FileNotFoundError, NotADirectoryError):
        return []
