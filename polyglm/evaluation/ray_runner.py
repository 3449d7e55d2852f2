"""`--runner ray`: the same per-batch function on Ray Data, for datasets that outgrow one machine.

Rows still to do become a Ray dataset; `map_batches` sends them to a pool of actors, each of which loads
the platform once (the one loader factory) and calls `runner.predict_batch`, exactly as the local runner
does. Records stream back to the driver, which appends them to predictions.jsonl as they arrive, so a
Ray run resumes after a crash the same way. `ray_address=None` starts a local Ray instance with
`ray_workers` CPUs; "auto" or "ray://head:10001" joins a running cluster (the workers need polyglm
installed and the profile's models prepared).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from polyglm.evaluation.manifest import Row
from polyglm.evaluation.tasks import Task

RECORD_COLUMN = "record_json"  # records travel as JSON text: their keys differ between items


class PredictActor:
    """One loaded model per actor; called with a batch of rows (as JSON), returns their records (as JSON)."""

    def __init__(self, task: Task, profile: str) -> None:
        from polyglm.evaluation.runner import build_predictor

        self.predictor = build_predictor(task, profile)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        from polyglm.evaluation.runner import predict_batch

        rows = [Row.from_dict(json.loads(text)) for text in batch["row_json"]]
        records = predict_batch(self.predictor, rows)
        return {RECORD_COLUMN: [json.dumps(r, ensure_ascii=False) for r in records]}


def predict_on_ray(rows: Sequence[Row], task: Task, options: Any) -> Iterator[list[dict]]:
    import ray
    import ray.data

    started_here = not ray.is_initialized()
    if started_here:
        if options.ray_address:
            ray.init(address=options.ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=options.ray_workers, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)  # fmt: skip
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the runner's tqdm bar counts items
        context.execution_options.preserve_order = True
        dataset = ray.data.from_items([{"row_json": json.dumps(row.as_dict(), ensure_ascii=False)} for row in rows])
        predicted = dataset.map_batches(
            PredictActor,
            fn_constructor_kwargs={"task": task, "profile": options.profile},
            batch_size=task.batch_size,
            compute=ray.data.ActorPoolStrategy(size=options.ray_workers),
            num_cpus=1,
            batch_format="numpy",
        )
        for batch in predicted.iter_batches(batch_size=task.batch_size, batch_format="numpy"):
            yield [json.loads(text) for text in batch[RECORD_COLUMN]]
    finally:
        if started_here:
            ray.shutdown()
