"""`polyglm models prepare`: build a profile's `prepared:` parts into the cache, once.

Each part is built into `<name>.partial/`, then renamed into place, and recorded in
`manifest.json` with a fingerprint of its recipe and inputs. A rerun skips parts whose fingerprint
matches and whose files are intact, removes what a killed run left half-written, and rebuilds only
what is missing or stale.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from polyglm.platform.config import Profile, Settings
from polyglm.platform.errors import PrepareError
from polyglm.platform.locate import prepared_dir
from polyglm.platform.recipes import RECIPES, Recipe

PART_INFO = ".polyglm-part.json"


@dataclass(frozen=True)
class PartReport:
    """What prepare did with one part."""

    name: str  # prepared part name
    action: str  # "built" or "skipped"
    seconds: float  # wall time spent on it in this run
    bytes: int  # size on disk


def manifest_path(settings: Settings) -> Path:
    return settings.cache_dir / "manifest.json"


def read_manifest(settings: Settings) -> dict:
    path = manifest_path(settings)
    if not path.is_file():
        return {"parts": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        # A torn manifest only costs a rebuild check, never a wrong skip: fingerprints are rechecked.
        return {"parts": {}}


def prepare_parts_of(profile: Profile) -> list[Recipe]:
    names = [spec.ref for spec in profile.parts.values() if spec.locator == "prepared"]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise PrepareError(
            f"profile {profile.name!r} names prepared parts with no recipe: {unknown}; known: {sorted(RECIPES)}"
        )
    return [RECIPES[n] for n in names]


def prepare_profile(
    profile: Profile,
    settings: Settings | None = None,
    on_part: Callable[[str, str], None] = lambda name, stage: None,
) -> list[PartReport]:
    """Build every missing or stale `prepared:` part of `profile`; returns one report per part."""
    settings = settings or Settings.from_env()
    recipes = prepare_parts_of(profile)
    ensure_writable(settings.cache_dir)
    reports = []
    with cache_lock(settings):
        for recipe in recipes:
            on_part(recipe.name, "start")
            reports.append(prepare_part(recipe, settings))
            on_part(recipe.name, reports[-1].action)
    return reports


def fingerprint(recipe: Recipe) -> str:
    text = json.dumps([recipe.name, recipe.version, [f.sha256 for f in recipe.inputs]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def is_current(recipe: Recipe, settings: Settings) -> bool:
    entry = read_manifest(settings)["parts"].get(recipe.name)
    out = prepared_dir(settings, recipe.name)
    if not entry or entry.get("fingerprint") != fingerprint(recipe) or not out.is_dir():
        return False
    return all((out / rel).is_file() and (out / rel).stat().st_size == size for rel, size in entry["files"].items())


def prepare_part(recipe: Recipe, settings: Settings) -> PartReport:
    out = prepared_dir(settings, recipe.name)
    started = time.perf_counter()
    if is_current(recipe, settings):
        return PartReport(recipe.name, "skipped", time.perf_counter() - started, tree_size(out))
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left behind by a run that was killed
    ensure_free_space(settings.cache_dir, recipe.disk_bytes, recipe.name)
    inputs = [f.locate() for f in recipe.inputs]
    with disk_errors(settings.cache_dir, recipe.name):
        partial.mkdir(parents=True)
        info = recipe.build(inputs, partial)
        files = {str(p.relative_to(partial)): p.stat().st_size for p in sorted(partial.rglob("*")) if p.is_file()}
        (partial / PART_INFO).write_text(json.dumps({"recipe": recipe.name, "info": info}, indent=2))
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
        seconds = time.perf_counter() - started
        record_part(settings, recipe, files, info, seconds)
    return PartReport(recipe.name, "built", seconds, tree_size(out))


def record_part(settings: Settings, recipe: Recipe, files: dict, info: dict, seconds: float) -> None:
    manifest = read_manifest(settings)
    manifest["parts"][recipe.name] = {
        "fingerprint": fingerprint(recipe),
        "recipe_version": recipe.version,
        "inputs": [f.describe() for f in recipe.inputs],
        "files": files,
        "info": info,
        "build_seconds": round(seconds, 2),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_atomic(manifest_path(settings), json.dumps(manifest, indent=2, sort_keys=True))


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


@contextmanager
def cache_lock(settings: Settings) -> Iterator[None]:
    """Two prepares at once would race on the same `.partial` folders: the second waits."""
    with open(settings.cache_dir / ".prepare.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_writable(cache_dir: Path) -> None:
    # mkdir(exist_ok=True) on a file raises a bare FileExistsError; say which setting to change instead
    if cache_dir.exists() and not cache_dir.is_dir():
        raise PrepareError(
            f"the polyglm cache {cache_dir} is a file, not a folder: set POLYGLM_CACHE to a folder (or move the "
            f"file away), then rerun `polyglm models prepare`"
        )
    with disk_errors(cache_dir, "the cache folder"):
        cache_dir.mkdir(parents=True, exist_ok=True)
        probe = cache_dir / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def ensure_free_space(cache_dir: Path, needed: int, what: str) -> None:
    free = free_bytes(cache_dir)
    if free < needed:
        raise PrepareError(
            f"not enough disk space in {cache_dir} to prepare {what}: needs about "
            f"{needed / 1e6:.0f} MB, {free / 1e6:.0f} MB free. Free some space or set POLYGLM_CACHE "
            f"to a folder on a larger disk, then rerun `polyglm models prepare`"
        )


DISK_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or set POLYGLM_CACHE to a larger disk",
    errno.EDQUOT: "the disk quota is exhausted; free some space or set POLYGLM_CACHE elsewhere",
    errno.EROFS: "the file system is read-only; set POLYGLM_CACHE to a writable folder",
    errno.EACCES: "permission denied; set POLYGLM_CACHE to a folder you can write",
    errno.EPERM: "permission denied; set POLYGLM_CACHE to a folder you can write",
    errno.ENOTDIR: "a path component is a file, not a folder; set POLYGLM_CACHE to a folder",
    errno.EEXIST: "a file stands where a folder must be; set POLYGLM_CACHE to a folder or move the file away",
}


@contextmanager
def disk_errors(cache_dir: Path, what: str) -> Iterator[None]:
    """Turn the disk's OSErrors into one actionable message; partial output is left for the rerun."""
    try:
        yield
    except OSError as exc:
        hint = DISK_HINTS.get(exc.errno)
        if hint is None:
            raise
        raise PrepareError(
            f"cannot write {what} in cache {cache_dir}: {exc.strerror} ({exc.filename or cache_dir}); "
            f"{hint}, then rerun `polyglm models prepare` (finished parts are kept)"
        ) from exc
