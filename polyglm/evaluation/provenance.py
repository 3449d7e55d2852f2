"""run.json: what a run was made from, so that it can be repeated and so that a resume cannot mix runs.

The identity (dataset digest, task digest and overrides, profile, adapter digests, for a scenario task its
pack's files, seed) is written when a run starts. Starting again into the same folder with a different
identity is refused with the two values side by side: resuming would otherwise append predictions of
another dataset, model or pack to these.
"""

from __future__ import annotations

import hashlib
import json
import platform as host
import subprocess
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from polyglm.evaluation.manifest import Manifest
from polyglm.evaluation.tasks import Task, task_pack
from polyglm.platform.errors import InputError

PACKAGES = ("polyglm", "torch", "transformers", "timm", "openai-whisper", "peft", "datasets", "scikit-learn", "ray")
IDENTITY = ("dataset_digest", "task_digest", "task_overrides", "profile", "adapters", "pack", "seed")


def adapter_digests(profile_name: str) -> dict[str, str]:
    """sha256 of each adapter manifest the profile names (the manifests carry their weights' hashes), and
    of everything shipped in the profile's adapter folder ("shipped": the LM delta, the sentiment head, its
    calibration and fusion weights, the syllable head), of the sentiment n-gram models (characters, syllables)
    and of the labelled memory (the labelled posts' labels), which labels depend on as much."""
    from polyglm.pipelines.sentiment_memory import load_memory
    from polyglm.pipelines.sentiment_ngram import ANALYZERS
    from polyglm.platform.config import load_profile
    from polyglm.platform.inventory import ADAPTER_ROOT, STAGE2_MANIFEST

    profile = load_profile(profile_name)
    found = {m: ADAPTER_ROOT / rel / "manifest.json" for m, rel in profile.adapters.items()}
    if profile.stage2:
        found["stage2"] = ADAPTER_ROOT / profile.stage2 / STAGE2_MANIFEST
    digests = {m: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "missing" for m, p in found.items()}
    shipped = ADAPTER_ROOT / profile.name
    # every profile's sentiment reads Chinese words (and the syllables it hears) with these
    ngrams = {analyzer.folder.replace("-", "_"): ADAPTER_ROOT / analyzer.folder for analyzer in ANALYZERS.values()}
    return (digests | ({"shipped": folder_digest(shipped)} if shipped.is_dir() else {})
            | {name: folder_digest(folder) for name, folder in ngrams.items() if folder.is_dir()}
            | {"sentiment_memory": load_memory().sha256})  # fmt: skip


def folder_digest(folder: Path, ignore: tuple[str, ...] = ()) -> str:
    """sha256 over every file under `folder` (relative path and content; Python's bytecode caches and the
    relative paths in `ignore` left out)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        if path.relative_to(folder).as_posix() in ignore:
            continue
        digest.update(f"{path.relative_to(folder).as_posix()}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def identity(options: Any, task: Task, manifest: Manifest) -> dict[str, Any]:
    return {
        "dataset_digest": manifest.digest,
        "task_digest": task.digest,
        "task_overrides": {k: v for k, v in options.task_overrides.items()},
        "profile": options.profile,
        "adapters": adapter_digests(options.profile),
        # a scenario task also runs on its pack's prompt, knowledge base, tools, labelled posts and scorers
        # (not on the README that describes the pack)
        "pack": folder_digest(task_pack(task).root, ignore=("README.md",)) if task.pack else None,
        "seed": options.seed,
    }


def check_or_start_run(path: Path, options: Any, task: Task, manifest: Manifest) -> dict[str, Any]:
    """Write run.json for a new run; for a resumed one check that it is the same run and log the attempt."""
    mine = identity(options, task, manifest)
    if path.is_file():
        run = json.loads(path.read_text(encoding="utf-8"))
        changed = [key for key in IDENTITY if run.get(key) != mine[key]]
        if changed:
            detail = "; ".join(f"{key}: was {run.get(key)!r}, now {mine[key]!r}" for key in changed)
            raise InputError(
                f"{path.parent} holds a run of another {'/'.join(changed)} ({detail}); resuming would mix the two. "
                "Give a new --out folder, or delete this one to start over"
            )
    else:
        run = {
            **mine,
            "task": task.name,
            "task_file": task.source,
            "manifest": str(manifest.path.resolve()),
            "layout": manifest.layout,
            "versions": versions(),
            "git_commit": git_commit(),
            "python": host.python_version(),
            "machine": host.machine(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "attempts": [],
        }
    run["attempts"].append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runner": options.runner})
    _write(path, run)
    return run


def finish_run(path: Path, metrics: Mapping[str, Any]) -> None:
    run = json.loads(path.read_text(encoding="utf-8"))
    run["attempts"][-1]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    run["items"] = metrics.get("items")
    run["failed"] = len(metrics.get("failed", []))
    _write(path, run)


def _write(path: Path, run: Mapping[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(run, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
