"""`polyglm eval`: one runner for every task, on this machine or on Ray, resumable after any crash.

Outputs in the run folder:
- `predictions.jsonl`: one record per item, appended, flushed and fsynced as each batch finishes, so a
  run killed at any point (SIGKILL included) and started again with the same command redoes nothing
  that finished and loses nothing; a half-written last line is dropped. Bad rows and failed items are
  records too (`error` with the reason); `--retry-failed` gives failed items another try.
- `metrics.json`: the task's metrics over all records; `report.html` with the plots;
- `run.json`: what makes the run repeatable (dataset and task digests, profile, adapter hashes, seed,
  package versions). A rerun into the same folder with another dataset or task is refused.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from polyglm.evaluation.manifest import Manifest, Row, read_manifest
from polyglm.evaluation.tasks import Task, load_task, task_pack
from polyglm.platform.errors import InputError

PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
RUN = "run.json"
REPORT = "report.html"
RUNNERS = ("local", "ray")


@dataclass(frozen=True)
class RunOptions:
    """One `polyglm eval` run."""

    task: str  # task name, name:argument, or a task .yaml path
    manifest: Path | None = None  # CSV / JSONL / folder; None = the task's default (a pack's eval set)
    out: Path | None = None  # run folder; default runs/eval/<profile>-<task>
    profile: str = "offline"
    runner: str = "local"  # local | ray
    limit: int | None = None  # first N usable rows (after stride and language filter)
    stride: int = 1  # every k-th row: a quick run that still covers a grouped eval set
    langs: tuple[str, ...] = ()  # only rows whose `lang` is one of these
    batch_size: int | None = None  # override the task's
    retry_failed: bool = False  # give items that failed before another try
    seed: int = 0
    ray_address: str | None = None  # None: start a local Ray instance; "auto" or ray://host:10001: a cluster
    ray_workers: int = 2  # actors, each with its own loaded model
    task_overrides: Mapping[str, Any] = field(default_factory=dict)  # e.g. scenario max_new_tokens, finetuned

    def folder(self, task: Task) -> Path:
        return self.out or Path("runs") / "eval" / f"{self.profile}-{task.name.replace(':', '-')}"


@dataclass(frozen=True)
class RunResult:
    folder: Path
    metrics: dict[str, Any]
    items: int
    failed: int
    new: int  # items predicted in this invocation


# ---------------------------------------------------------------- the records file


def read_records(path: Path) -> list[dict]:
    """Every complete record; a line cut off by a crash is removed so that appends stay valid JSONL."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records, kept = [], []
    for line in lines:
        try:
            records.append(json.loads(line))
            kept.append(line)
        except json.JSONDecodeError:
            continue
    if len(kept) != len(lines):
        replace_durably(path, "".join(f"{line}\n" for line in kept))
    return records


def append_records(path: Path, records: Iterable[Mapping]) -> None:
    """Append and make durable before returning: a SIGKILL right after loses none of them."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if text:
        write_durably(path, text, "a")


def write_durably(path: Path, text: str, mode: str) -> None:
    """Write (mode "w") or append ("a") `text` and fsync before returning."""
    with path.open(mode, encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def replace_durably(path: Path, text: str) -> None:
    """`path` now holds `text`: written beside it, then swapped in whole, so a crash leaves one or the other."""
    partial = path.with_suffix(".partial")
    write_durably(partial, text, "w")
    partial.replace(path)


def keep_latest_records(path: Path) -> None:
    """Rewrite `path` with one record per id, the latest, in first-seen order (a retry appends a second
    record for an item)."""
    latest = {r["id"]: r for r in read_records(path)}
    replace_durably(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in latest.values()))


# ---------------------------------------------------------------- choosing the work


def resolve_task(options: RunOptions) -> Task:
    task = load_task(options.task)
    overrides = dict(options.task_overrides)
    if options.batch_size:
        overrides["batch_size"] = options.batch_size
    if not overrides:
        return task
    known = {k: v for k, v in overrides.items() if k in Task.__dataclass_fields__}
    extra = {**task.extra, **{k: v for k, v in overrides.items() if k not in known}}
    return replace(task, **known, extra=extra)


def manifest_path(options: RunOptions, task: Task) -> Path:
    if options.manifest is not None:
        return Path(options.manifest)
    if task.manifest == "pack":
        return task_pack(task).eval_set
    raise InputError(f"task {task.name!r} has no default dataset: name a manifest (CSV, JSONL or folder)")


def select_rows(manifest: Manifest, options: RunOptions) -> list[Row]:
    if options.stride < 1:
        raise InputError(f"stride must be 1 or more (every k-th row), got {options.stride}")
    langs = set(options.langs)
    chosen = [row for row in manifest.rows if not langs or row.lang in langs][:: options.stride]
    if langs and not chosen:
        present = sorted({row.lang for row in manifest.rows if row.lang})
        raise InputError(f"no row of {manifest.path} has lang {sorted(langs)}; its rows have {present or 'no lang'}")
    return chosen[: options.limit] if options.limit is not None else chosen


def batches(rows: Sequence[Row], size: int) -> Iterator[list[Row]]:
    for start in range(0, len(rows), max(1, size)):
        yield list(rows[start : start + max(1, size)])


def predict_batch(predictor: Any, rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The per-batch function both runners call: the batch at once; if an item of it is bad, one by one so
    that only that item fails (with its reason) and the others are still scored."""
    started = time.perf_counter()
    try:
        records = predictor.predict(rows)
    except InputError as exc:  # the item's own problem; a missing model or a bug stops the run instead
        if len(rows) == 1:
            return [{"id": rows[0].id, "error": str(exc), "seconds": round(time.perf_counter() - started, 4)}]
        return [record for row in rows for record in predict_batch(predictor, [row])]
    each = round((time.perf_counter() - started) / max(len(rows), 1), 4)
    return [{**record, "seconds": each} for record in records]


# ---------------------------------------------------------------- the run


def run_eval(
    options: RunOptions,
    platform: Any = None,
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Run (or resume) an evaluation; returns its metrics, also written to metrics.json with report.html."""
    from polyglm.evaluation import report
    from polyglm.evaluation.provenance import check_or_start_run, finish_run

    if options.runner not in RUNNERS:
        raise InputError(f"unknown runner {options.runner!r}; choose one of {', '.join(RUNNERS)}")
    task = resolve_task(options)
    manifest = read_manifest(manifest_path(options, task), task.columns, task.target)
    rows = select_rows(manifest, options)
    folder = options.folder(task)
    folder.mkdir(parents=True, exist_ok=True)
    check_or_start_run(folder / RUN, options, task, manifest)
    path = folder / PREDICTIONS
    records = {r["id"]: r for r in read_records(path)}
    append_records(path, _bad_row_records(manifest, records))
    records |= {b.id: {"id": b.id, "error": b.reason, "line": b.line} for b in manifest.bad}
    todo = [r for r in rows if r.id not in records or (options.retry_failed and "error" in records[r.id])]
    retried = any(r.id in records for r in todo)
    new = 0
    for batch_records in _predicted(todo, task, options, platform, progress, on_progress, len(rows)):
        append_records(path, batch_records)
        records |= {r["id"]: r for r in batch_records}
        new += len(batch_records)
    if retried:
        keep_latest_records(path)
    wanted = [records[r.id] for r in rows if r.id in records] + [records[b.id] for b in manifest.bad]
    metrics = report.task_metrics(task, wanted)
    (folder / METRICS).write_text(json.dumps(metrics, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    report.write_report(folder / REPORT, task, metrics, wanted)
    finish_run(folder / RUN, metrics)
    return RunResult(folder=folder, metrics=metrics, items=len(wanted), failed=len(metrics["failed"]), new=new)


def _bad_row_records(manifest: Manifest, records: Mapping[str, Any]) -> list[dict]:
    return [{"id": b.id, "error": b.reason, "line": b.line} for b in manifest.bad if b.id not in records]


def _predicted(
    todo: Sequence[Row],
    task: Task,
    options: RunOptions,
    platform: Any,
    progress: bool,
    on_progress: Callable[[int, int], None] | None,
    total: int,
) -> Iterator[list[dict]]:
    """Records of the rows still to do, batch by batch, from the chosen runner, with a progress bar."""
    from tqdm import tqdm

    if not todo:
        return
    if options.runner == "ray":
        from polyglm.evaluation.ray_runner import predict_on_ray

        stream = predict_on_ray(todo, task, options)
    else:
        predictor = build_predictor(task, options.profile, platform)
        stream = (predict_batch(predictor, batch) for batch in batches(todo, task.batch_size))
    done = total - len(todo)
    with tqdm(total=total, initial=done, desc=f"eval {task.name}", unit="item", disable=not progress) as bar:
        for batch_records in stream:
            yield batch_records
            bar.update(len(batch_records))
            done += len(batch_records)
            if on_progress:
                on_progress(done, total)


def build_predictor(task: Task, profile: str, platform: Any = None) -> Any:
    """The task's predictor over a platform (loaded here when not given: once per process or actor)."""
    from polyglm.evaluation.predictors import PREDICTORS
    from polyglm.platform.loader import load_platform

    if task.predict not in PREDICTORS:
        raise InputError(f"task {task.name!r}: unknown `predict: {task.predict}`; known: {', '.join(PREDICTORS)}")
    platform = platform or load_platform(profile)
    if task.extra.get("finetuned") and task.pack:
        from polyglm.pipelines.finetune import load_finetuned

        load_finetuned(platform, task.pack)
    return PREDICTORS[task.predict](platform, task)
