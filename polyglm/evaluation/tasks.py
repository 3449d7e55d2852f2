"""Evaluation tasks as YAML files (the lm-evaluation-harness way): what to predict, the prompt, the metrics.

A task file names a predictor (`predict:` a key of `polyglm.evaluation.predictors.PREDICTORS`), its
target (`labels:` for classification, `score_range:` for regression), the `instruction:` given to the
model, the manifest `columns:` it reads and the `batch_size`. `include: other.yaml` starts from another
file (relative to this one); keys written here win. A task that takes an argument declares
`parameter: NAME`: `--task scenario:medical` loads `scenario.yaml` with `pack: medical`.

Users add a task by adding a file: `--task path/to/task.yaml`, or drop it into a folder named by
`POLYGLM_TASKS` to call it by name. Built-in tasks live in `polyglm/evaluation/tasks/`.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from polyglm.evaluation.manifest import Columns, Target
from polyglm.platform.errors import InputError

BUILTIN_TASKS = Path(__file__).parent / "tasks"
MAX_INCLUDE_DEPTH = 5


@dataclass(frozen=True)
class Task:
    """One evaluation task, as read from its YAML file."""

    name: str  # what `--task` calls it (with `:argument` for parameterised tasks)
    predict: str  # predictor key: labels | sentiment | scenario
    description: str = ""
    labels: tuple[str, ...] = ()  # classification: the label set, scored by label scoring
    score_range: float | None = None  # regression: scores lie in [-score_range, score_range] (1: CH-SIMS, 3: MOSI)
    instruction: str = ""  # prompt for the model before each item
    columns: Columns = field(default_factory=Columns)  # manifest column names
    batch_size: int = 8  # items per model call
    pack: str = ""  # scenario tasks: the pack
    manifest: str = ""  # default manifest when the command names none ("pack" = the pack's eval set)
    source: str = ""  # the file it came from
    digest: str = ""  # sha256 of the resolved task (file text after includes), recorded in run.json
    extra: Mapping[str, Any] = field(default_factory=dict)  # any other keys, for predictors that want them

    @property
    def target(self) -> Target:
        return Target(labels=self.labels, score_range=self.score_range)

    @property
    def kind(self) -> str:
        """classification | regression | scenario: which metrics apply."""
        if self.predict == "scenario":
            return "scenario"
        return "regression" if self.score_range is not None else "classification"


def task_pack(task: Task) -> Any:
    """The scenario pack a `scenario:<pack>` task runs (from `packs_dir` in its overrides when given)."""
    return _pack(task.pack, str(task.extra.get("packs_dir") or ""))


@functools.lru_cache(maxsize=16)
def _pack(name: str, packs_dir: str) -> Any:
    from polyglm.scenarios.loader import load_pack

    return load_pack(name, packs_dir=Path(packs_dir) if packs_dir else None)


def task_folders() -> list[Path]:
    extra = os.environ.get("POLYGLM_TASKS", "")
    return [*(Path(p) for p in extra.split(os.pathsep) if p), BUILTIN_TASKS]


def available_tasks() -> dict[str, Path]:
    """Task name -> file, over POLYGLM_TASKS folders then the built-in ones (first wins), sorted by name."""
    found: dict[str, Path] = {}
    for folder in task_folders():
        for file in sorted(folder.glob("*.yaml")):
            if file.name.startswith("_"):
                continue  # fragments for `include:`
            name = _read_yaml(file).get("name", file.stem)
            found.setdefault(str(name), file)
    return dict(sorted(found.items()))


def load_task(spec: str) -> Task:
    """A task by file path, by name, or `name:argument` for a task that declares `parameter:`."""
    path = Path(spec)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_task_file(path, argument=None)
    name, _, argument = spec.partition(":")
    tasks = available_tasks()
    if name not in tasks:
        raise InputError(
            f"unknown task {spec!r}; tasks: {', '.join(tasks)} (or a path to a task .yaml file; "
            "see `polyglm eval --list-tasks`)"
        )
    return load_task_file(tasks[name], argument=argument or None)


def load_task_file(path: Path, argument: str | None) -> Task:
    """The task in `path`, with `argument` for its `parameter:` (None for a task without one)."""
    data, text = _resolve_includes(path, depth=0)
    parameter = data.pop("parameter", None)
    if parameter and not argument:
        raise InputError(
            f"task {data.get('name', path.stem)!r} needs an argument: --task {data.get('name')}:<{parameter}>"
        )
    if argument and not parameter:
        raise InputError(f"task {data.get('name', path.stem)!r} takes no argument, but got {argument!r}")
    if parameter:
        data[parameter] = argument
        data["name"] = f"{data.get('name', path.stem)}:{argument}"
    data.setdefault("name", path.stem)
    known = {f.name for f in fields(Task)} - {"source", "digest", "extra"}
    if "predict" not in data:
        raise InputError(
            f"task file {path} has no `predict:`; say what the task predicts (labels, sentiment, scenario)"
        )
    columns = data.pop("columns", None) or {}
    unknown_columns = set(columns) - {f.name for f in fields(Columns)}
    if unknown_columns:
        raise InputError(
            f"task file {path}: unknown columns {sorted(unknown_columns)}; known: {[f.name for f in fields(Columns)]}"
        )
    values = {k: v for k, v in data.items() if k in known}
    values["labels"] = tuple(str(label) for label in values.get("labels", ()))
    if values.get("score_range") is not None:
        values["score_range"] = float(values["score_range"])
    digest = hashlib.sha256(f"{text}\n{parameter}={argument}".encode()).hexdigest()
    return Task(**values, columns=Columns(**columns), source=str(path), digest=digest,
                extra={k: v for k, v in data.items() if k not in known})  # fmt: skip


def _resolve_includes(path: Path, depth: int) -> tuple[dict[str, Any], str]:
    if depth > MAX_INCLUDE_DEPTH:
        raise InputError(f"task file {path}: `include:` nests deeper than {MAX_INCLUDE_DEPTH} (a loop?)")
    data = _read_yaml(path)
    text = path.read_text(encoding="utf-8")
    include = data.pop("include", None)
    if include:
        base, base_text = _resolve_includes((path.parent / include).resolve(), depth + 1)
        data = {**base, **data}
        text = base_text + "\n" + text
    return data, text


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"task file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"task file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"task file {path} must be a mapping of keys (name, predict, labels, ...)")
    return data
