"""`polyglm eval --compare RUN_A RUN_B`: metric deltas (B - A) with paired bootstrap 95 % intervals.

Only items both runs scored are compared, paired by id, so a change of model or prompt is measured on
the same items. Each metric is recomputed on every resample from the records, with the same code as
metrics.json, so the deltas cannot drift from what the runs report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyglm.evaluation.metrics import Delta, paired_bootstrap
from polyglm.evaluation.report import headline, task_metrics
from polyglm.evaluation.runner import METRICS, PREDICTIONS, RUN, read_records
from polyglm.evaluation.tasks import Task, load_task_file
from polyglm.platform.errors import InputError


def _run(folder: Path) -> tuple[Task, dict[str, dict]]:
    for name in (RUN, PREDICTIONS, METRICS):
        if not (folder / name).is_file():
            raise InputError(f"{folder} is not a finished polyglm eval run: it has no {name}")
    run = json.loads((folder / RUN).read_text(encoding="utf-8"))
    task = load_task_file(Path(run["task_file"]), run["task"].partition(":")[2] or None)
    records = {r["id"]: r for r in read_records(folder / PREDICTIONS) if "error" not in r}
    return task, records


def compare_runs(folder_a: Path, folder_b: Path, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    task_a, records_a = _run(Path(folder_a))
    task_b, records_b = _run(Path(folder_b))
    if task_a.kind != task_b.kind:
        raise InputError(f"cannot compare a {task_a.kind} run ({task_a.name}) with a {task_b.kind} run ({task_b.name})")
    shared = sorted(set(records_a) & set(records_b))
    if not shared:
        raise InputError(f"{folder_a} and {folder_b} scored no item in common (ids differ): nothing to compare")
    deltas = paired_bootstrap(
        _metrics_on(task_a, [records_a[i] for i in shared]),
        _metrics_on(task_b, [records_b[i] for i in shared]),
        len(shared), resamples, seed,
    )  # fmt: skip
    return {
        "a": str(folder_a),
        "b": str(folder_b),
        "items_compared": len(shared),
        "only_in_a": len(set(records_a) - set(records_b)),
        "only_in_b": len(set(records_b) - set(records_a)),
        "deltas": [d.__dict__ for d in deltas],
    }


def _metrics_on(task: Task, records: Sequence[Mapping]) -> Callable[[np.ndarray], Mapping[str, float | None]]:
    def value(indices: np.ndarray) -> Mapping[str, float | None]:
        return headline(task_metrics(task, [records[i] for i in indices]))

    return value


def format_comparison(result: Mapping[str, Any]) -> str:
    lines = [
        f"A: {result['a']}",
        f"B: {result['b']}",
        f"{result['items_compared']} items in both "
        f"(only in A: {result['only_in_a']}, only in B: {result['only_in_b']})",
        f"{'metric':26s} {'A':>8s} {'B':>8s} {'B - A':>8s}  95 % CI (paired bootstrap)",
    ]
    for d in (Delta(**row) for row in result["deltas"]):
        mark = "" if d.low <= 0 <= d.high else "  *"
        lines.append(f"{d.metric:26s} {d.a:8.4f} {d.b:8.4f} {d.delta:+8.4f}  [{d.low:+.4f}, {d.high:+.4f}]{mark}")
    if any(line.endswith("*") for line in lines):
        lines.append("* the interval excludes 0")
    return "\n".join(lines)
