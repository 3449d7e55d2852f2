"""Pack tools: the `@tool` decorator, schemas from type hints + docstrings, and a safe runtime.

A tool is a plain function in a pack's `tools.py` (see SCHEMA.md). `@tool` leaves it unchanged and
callable and attaches a `ToolSpec` as `__polyglm_tool__`, with a JSON-schema built from its type
hints and its Google-style `Args:` section (after smolagents' `tool()`). `call_tool` is what a chat
pipeline uses: it checks the model's arguments against that schema, runs the tool under its time
limit and turns the tool's `ValueError` into an error result the model can read and recover from.
"""

from __future__ import annotations

import inspect
import json
import re
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from polyglm.platform.config import Settings
from polyglm.scenarios.schema import ScenarioError, ScenarioPack
from polyglm.scenarios.tool_worker import execute_tools_file, remember_origin

DEFAULT_TIMEOUT_S = 5.0
TOOL_ATTRIBUTE = "__polyglm_tool__"
PLANNER_ATTRIBUTE = "__polyglm_planner__"
_PACK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ToolArgumentError(ScenarioError, ValueError):
    """The arguments a model passed do not match the tool's schema."""


@dataclass(frozen=True)
class ToolSpec:
    """What a model needs to call a tool, plus the function and its limit. Treat dicts as read-only."""

    name: str  # the function's name; what the model calls
    description: str  # the docstring text before `Args:`, whitespace collapsed
    parameters: dict[str, Any]  # JSON schema of the arguments: an object with properties/required
    timeout_s: float  # wall-clock limit enforced by call_tool
    function: Callable[..., dict] = field(repr=False, compare=False)  # the original function

    def schema(self) -> dict[str, Any]:
        """The function-calling schema (name, description, parameters) as fresh plain dicts."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": json.loads(json.dumps(self.parameters)),
        }


@dataclass(frozen=True)
class ToolCall:
    """One tool invocation, as recorded in a chat trace. Exactly one of result/error is set."""

    name: str  # tool name
    arguments: dict[str, Any]  # the arguments as the model sent them
    result: dict[str, Any] | None  # the tool's JSON-serialisable result
    error: str | None  # why there is no result: bad arguments, a ValueError, a timeout
    seconds: float  # wall time including argument checks

    @property
    def ok(self) -> bool:
        return self.error is None

    def observation(self) -> str:
        """The content of the `observation` message the model sees next."""
        payload = self.result if self.ok else {"error": self.error}
        return json.dumps(payload, ensure_ascii=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arguments": self.arguments,
            "result": self.result,
            "error": self.error,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class PlannedCall:
    """A tool call a pack's rules decided on before the model speaks (see `planner`)."""

    name: str  # a tool of the same pack
    arguments: dict[str, Any]  # checked against the tool's schema like a model's arguments
    reason: str  # why the rule fired, shown in the chat trace


# ---------------------------------------------------------------- the decorators


def tool(function: Callable | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S):
    """Mark a function as a pack tool. Use bare (`@tool`) or with a limit (`@tool(timeout_s=2.0)`)."""

    def decorate(fn: Callable) -> Callable:
        setattr(fn, TOOL_ATTRIBUTE, build_spec(fn, timeout_s))
        return fn

    return decorate(function) if function is not None else decorate


def planner(fn: Callable | None = None, *, reads_attachments: bool = False):
    """Mark `fn(message: str, lang: str)` as a pack planner (named in `planners:`). Use bare
    (`@planner`) or, for a safety screen, `@planner(reads_attachments=True)`.

    It returns a list of `PlannedCall`s, or is a generator that yields them one at a time and is
    sent each call's `ToolCall` back, so a later step can depend on an earlier result (a refund
    that needs review is then handed to a person).

    Planners are deterministic screens that run before generation on every user message: the
    safety-critical or slot-filling calls (red-flag triage, an order id in the message) must not
    depend on whether a small model happens to emit a tool call. The model still sees the results
    and may call further tools itself.

    A planner reads the user's own message only, so text inside a photo or a voice note cannot make it
    call a tool. Safety screens (red-flag triage) are the exception: with `reads_attachments` they
    also read the OCR text and transcripts of what the user attached, as data to match, because a
    voice note describing chest pain must be triaged like the same words typed.
    """
    if fn is None:
        return lambda f: planner(f, reads_attachments=reads_attachments)
    setattr(fn, PLANNER_ATTRIBUTE, True)
    fn.__polyglm_reads_attachments__ = reads_attachments
    return fn


def build_spec(fn: Callable, timeout_s: float = DEFAULT_TIMEOUT_S) -> ToolSpec:
    """The ToolSpec of `fn`; a missing hint or docstring entry is a ScenarioError naming both."""
    where = _where(fn)
    if not timeout_s > 0:
        raise ScenarioError(f"{where}: timeout_s must be positive, got {timeout_s!r}")
    description, arg_docs = parse_docstring(fn.__doc__ or "")
    if not description:
        raise ScenarioError(f"{where}: needs a docstring that says what the tool does")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # a NameError or bad annotation in the pack's tools.py
        raise ScenarioError(f"{where}: cannot resolve its type hints: {type(exc).__name__}: {exc}") from None
    parameters = inspect.signature(fn).parameters
    _check_documented(where, parameters, hints, arg_docs)
    properties = {name: _property_schema(where, p, hints[name], arg_docs[name]) for name, p in parameters.items()}
    required = [name for name, p in parameters.items() if p.default is inspect.Parameter.empty]
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return ToolSpec(
        name=fn.__name__, description=description, parameters=schema, timeout_s=float(timeout_s), function=fn
    )


def tool_spec(spec_or_fn: ToolSpec | Callable) -> ToolSpec:
    if isinstance(spec_or_fn, ToolSpec):
        return spec_or_fn
    spec = getattr(spec_or_fn, TOOL_ATTRIBUTE, None)
    if not isinstance(spec, ToolSpec):
        raise ScenarioError(f"{spec_or_fn!r} is not a tool; decorate it with @tool from polyglm.scenarios.tooling")
    return spec


def _where(fn: Callable) -> str:
    file = inspect.getsourcefile(fn) or "?"
    return f"tool `{fn.__name__}` in {file}"


def _check_documented(where: str, parameters: Mapping[str, inspect.Parameter], hints: dict, docs: dict) -> None:
    for name, parameter in parameters.items():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ScenarioError(f"{where}: *args/**kwargs cannot be described to a model; name each parameter")
        if name not in hints:
            raise ScenarioError(f"{where}: parameter `{name}` needs a type hint")
        if name not in docs:
            raise ScenarioError(f"{where}: parameter `{name}` needs a line in the docstring's `Args:` section")
    extra = sorted(set(docs) - set(parameters))
    if extra:
        raise ScenarioError(f"{where}: `Args:` documents {extra}, which the function does not take")


def _property_schema(where: str, parameter: inspect.Parameter, hint: Any, doc: str) -> dict[str, Any]:
    try:
        schema = schema_for_type(hint)
    except TypeError as exc:
        raise ScenarioError(f"{where}: parameter `{parameter.name}`: {exc}") from None
    schema["description"] = doc
    if parameter.default is not inspect.Parameter.empty and _is_json(parameter.default):
        schema["default"] = parameter.default
    return schema


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# ---------------------------------------------------------------- type hints -> JSON schema

_PRIMITIVES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def schema_for_type(hint: Any) -> dict[str, Any]:
    """JSON schema for str/int/float/bool, list[...], dict[str, ...], Literal[...] and Optional[...]/X | None."""
    if hint in _PRIMITIVES:
        return {"type": _PRIMITIVES[hint]}
    if hint is dict:
        return {"type": "object"}
    builder = _GENERIC_BUILDERS.get(get_origin(hint))
    if builder is None:
        supported = "str, int, float, bool, list[...], dict[str, ...], Literal[...], Optional[...]"
        raise TypeError(f"type {hint!r} is not supported in tool schemas; use {supported}")
    return builder(hint)


def _array_schema(hint: Any) -> dict[str, Any]:
    args = get_args(hint)
    if len(args) != 1:
        raise TypeError(f"{hint!r}: name the item type, e.g. list[str]")
    return {"type": "array", "items": schema_for_type(args[0])}


def _object_schema(hint: Any) -> dict[str, Any]:
    """dict or dict[str, X]: a JSON object, its values checked against X when given."""
    args = get_args(hint)
    if not args:
        return {"type": "object"}
    if args[0] is not str:
        raise TypeError(f"{hint!r}: JSON object keys are strings; use dict[str, ...]")
    return {"type": "object", "additionalProperties": schema_for_type(args[1])}


def _enum_schema(hint: Any) -> dict[str, Any]:
    values = list(get_args(hint))
    kinds = {type(v) for v in values}
    if len(kinds) != 1 or next(iter(kinds)) not in _PRIMITIVES:
        raise TypeError(f"{hint!r}: Literal values must all be str, int, float or bool of one kind")
    return {"type": _PRIMITIVES[kinds.pop()], "enum": values}


def _optional_schema(hint: Any) -> dict[str, Any]:
    members = [a for a in get_args(hint) if a is not type(None)]
    if len(members) != 1 or len(get_args(hint)) != 2:
        raise TypeError(f"{hint!r}: only Optional[X] (X | None) unions are supported")
    return {**schema_for_type(members[0]), "nullable": True}


# get_origin() of list[str] is list, of Literal[...] is Literal, of Optional[X] is Union (or UnionType for X | None).
_GENERIC_BUILDERS: dict[Any, Callable[[Any], dict[str, Any]]] = {
    list: _array_schema,
    dict: _object_schema,
    Literal: _enum_schema,
    Union: _optional_schema,
    types.UnionType: _optional_schema,
}


# ---------------------------------------------------------------- Google-style docstrings

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Examples?|Notes?|See Also):\s*$")
_ARG_LINE = re.compile(r"^(\s+)(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {arg: text}) from a Google-style docstring; sections other than Args are dropped."""
    description: list[str] = []
    args: dict[str, list[str]] = {}
    section: str | None = None
    arg_indent: int | None = None
    current: str | None = None
    for line in inspect.cleandoc(doc).splitlines():
        header = _SECTION.match(line)
        if header:
            section, arg_indent, current = header.group(1), None, None
            continue
        if section is None:
            description.append(line)
            continue
        if section not in ("Args", "Arguments", "Parameters"):
            continue
        match = _ARG_LINE.match(line)
        if match and (arg_indent is None or len(match.group(1)) == arg_indent):
            arg_indent, current = len(match.group(1)), match.group(2)
            args[current] = [match.group(3)]
        elif current is not None and line.strip():
            args[current].append(line.strip())  # continuation of the previous argument
    return _collapse(description), {name: _collapse(parts) for name, parts in args.items()}


def _collapse(lines: Sequence[str]) -> str:
    return " ".join(" ".join(lines).split())


# ---------------------------------------------------------------- argument validation

_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),  # True is an int in Python, not here
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def validate_arguments(spec_or_fn: ToolSpec | Callable, arguments: Any) -> dict[str, Any]:
    """The arguments as a dict if they match the schema; otherwise ToolArgumentError saying what is wrong."""
    spec = tool_spec(spec_or_fn)
    if not isinstance(arguments, Mapping):
        raise ToolArgumentError(f"tool `{spec.name}`: arguments must be an object, got {type(arguments).__name__}")
    properties = spec.parameters["properties"]
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        raise ToolArgumentError(f"tool `{spec.name}`: unknown argument(s) {unknown}; it takes {sorted(properties)}")
    missing = [name for name in spec.parameters["required"] if name not in arguments]
    if missing:
        raise ToolArgumentError(f"tool `{spec.name}`: missing required argument(s) {missing}")
    for name, value in arguments.items():
        problem = value_problem(properties[name], value)
        if problem:
            raise ToolArgumentError(f"tool `{spec.name}`: argument `{name}` {problem}")
    return dict(arguments)


def value_problem(schema: Mapping[str, Any], value: Any) -> str | None:
    """Why `value` does not fit `schema`, or None when it fits."""
    if value is None:
        return None if schema.get("nullable") else "must not be null"
    if not _TYPE_CHECKS[schema["type"]](value):
        return f"must be of type {schema['type']}, got {type(value).__name__} {value!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {schema['enum']}, got {value!r}"
    return _CONTAINED_PROBLEMS.get(schema["type"], _no_problem)(schema, value)


def _no_problem(schema: Mapping[str, Any], value: Any) -> None:
    return None


def _array_problem(schema: Mapping[str, Any], value: list) -> str | None:
    problems = ((index, value_problem(schema["items"], item)) for index, item in enumerate(value))
    return next((f"item {index} {problem}" for index, problem in problems if problem), None)


def _object_problem(schema: Mapping[str, Any], value: dict) -> str | None:
    if "additionalProperties" not in schema:
        return None
    if not all(isinstance(key, str) for key in value):
        return "must have string keys"
    problems = ((key, value_problem(schema["additionalProperties"], item)) for key, item in value.items())
    return next((f"entry {key!r} {problem}" for key, problem in problems if problem), None)


# what to check inside a container once its own type is right
_CONTAINED_PROBLEMS: dict[str, Callable[[Mapping[str, Any], Any], str | None]] = {
    "array": _array_problem,
    "object": _object_problem,
}


# ---------------------------------------------------------------- running a tool


def call_tool(spec_or_fn: ToolSpec | Callable, arguments: Any, timeout_s: float | None = None) -> ToolCall:
    """Validate, run under the time limit, and record. Bad arguments, ValueError and timeouts become errors.

    Any other exception is a bug in the tool and propagates, so tests and logs show it.
    """
    spec = tool_spec(spec_or_fn)
    started = time.perf_counter()
    recorded = dict(arguments) if isinstance(arguments, Mapping) else {"_raw": arguments}

    def record(result: dict | None = None, error: str | None = None) -> ToolCall:
        return ToolCall(spec.name, recorded, result, error, time.perf_counter() - started)

    try:
        checked = validate_arguments(spec, arguments)
    except ToolArgumentError as exc:
        return record(error=str(exc))
    outcome = _run_with_limit(spec, checked, timeout_s or spec.timeout_s)
    if isinstance(outcome, _Failure):
        return record(error=outcome.message)
    _check_result(spec, outcome)
    return record(result=outcome)


@dataclass(frozen=True)
class _Failure:
    message: str


def _run_with_limit(spec: ToolSpec, arguments: dict[str, Any], limit: float) -> dict | _Failure:
    """Run in a worker process that is killed, with everything the tool started, once `limit` passes.

    Not a thread: a thread cannot be stopped, so an overrunning tool went on writing files and holding
    databases after its caller had given up. See tool_worker.py for the cost and what crosses over.
    """
    from polyglm.scenarios.tool_worker import WorkerError, origin_of, run_in_worker

    origin = origin_of(spec.function)
    if origin is None:
        raise ScenarioError(
            f"tool `{spec.name}` ({spec.function.__qualname__}) is defined inside a function; tools run in a worker "
            f"process that imports them, so define it at the top level of its module (a pack's tools.py)"
        )
    try:
        outcome = run_in_worker(origin, arguments, limit)
    except WorkerError as exc:
        raise ScenarioError(f"tool `{spec.name}`: {exc}") from None
    if outcome.timed_out:
        return _Failure(f"tool `{spec.name}` timed out after {limit:g} s; try again later or hand off to a human")
    if outcome.value_error is not None:
        return _Failure(outcome.value_error)
    if outcome.unusable is not None:
        raise ScenarioError(f"tool `{spec.name}` must return a JSON-serialisable dict, got {outcome.unusable}")
    return outcome.result


def _check_result(spec: ToolSpec, result: Any) -> None:
    if not isinstance(result, dict) or not _is_json(result):
        raise ScenarioError(f"tool `{spec.name}` must return a JSON-serialisable dict, got {type(result).__name__}")


def run_planners(
    planners: Sequence[Callable], tools: Mapping[str, Callable], message: str, lang: str, attached_text: str = ""
) -> list[tuple[PlannedCall, ToolCall]]:
    """Every planned call of every planner, run in order, with its reason. A planner's own bug propagates.

    `attached_text` (OCR text, transcripts) reaches only planners marked `reads_attachments`."""
    done: list[tuple[PlannedCall, ToolCall]] = []

    def run(planned: PlannedCall) -> ToolCall:
        fn = tools.get(planned.name)
        if fn is None:
            raise ScenarioError(f"a planner chose `{planned.name}`, which is not one of the tools {sorted(tools)}")
        call = call_tool(fn, planned.arguments)
        done.append((planned, call))
        return call

    for plan in planners:
        reads = getattr(plan, "__polyglm_reads_attachments__", False) and attached_text.strip()
        steps = plan(f"{message}\n{attached_text}" if reads else message, lang)
        if isinstance(steps, types.GeneratorType):
            try:
                planned = next(steps)
                while True:
                    planned = steps.send(run(planned))
            except StopIteration:
                pass
        else:
            for planned in steps:
                run(planned)
    return done


# ---------------------------------------------------------------- packs


def state_dir(pack_name: str) -> Path:
    """Where a pack's tools keep state (databases, quiz results): outside the repo, created on demand."""
    if not _PACK_NAME.match(pack_name):
        raise ScenarioError(f"state_dir: {pack_name!r} is not a pack name (snake_case, e.g. customer_service)")
    path = Settings.from_env().cache_dir / "scenario_state" / pack_name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScenarioError(
            f"cannot create the state folder {path} for pack {pack_name!r}: {exc.strerror}; "
            "point POLYGLM_CACHE at a writable folder"
        ) from None
    return path


def load_tools(pack: ScenarioPack, module: types.ModuleType | None = None) -> list[Callable]:
    """The pack's @tool functions named in scenario.yaml, in that order (tools.py imported by file path,
    unless the already imported `module` is given)."""
    if not pack.tools:
        return []
    module = module or import_tools_module(pack)
    return [_named(pack, module, name, "tools", _is_tool, "@tool") for name in pack.tools]


def load_planners(pack: ScenarioPack, module: types.ModuleType | None = None) -> list[Callable]:
    """The pack's @planner functions named in scenario.yaml `planners:`, in that order."""
    if not pack.planners:
        return []
    module = module or import_tools_module(pack)
    return [_named(pack, module, name, "planners", _is_planner, "@planner") for name in pack.planners]


def import_tools_module(pack: ScenarioPack) -> types.ModuleType:
    """Execute the pack's tools.py afresh as module `polyglm_pack_<name>_tools`."""
    path = pack.tools_file
    if not path.is_file():
        raise ScenarioError(
            f"scenario pack {pack.name!r}: {pack.manifest}: field `tools` names {list(pack.tools)}, "
            f"but {path} is missing"
        )
    try:
        module = execute_tools_file(f"polyglm_pack_{pack.name}_tools", path)
    except Exception as exc:
        raise ScenarioError(
            f"scenario pack {pack.name!r}: {path} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    remember_origin(module, path, _is_tool)  # the tool worker executes this same file to run them
    return module


def _is_tool(fn: Callable) -> bool:
    return isinstance(getattr(fn, TOOL_ATTRIBUTE, None), ToolSpec)


def _is_planner(fn: Callable) -> bool:
    return getattr(fn, PLANNER_ATTRIBUTE, None) is True


def _named(
    pack: ScenarioPack,
    module: types.ModuleType,
    name: str,
    field: str,
    marked: Callable[[Callable], bool],
    decorator: str,
) -> Callable:
    fn = getattr(module, name, None)
    if fn is None:
        raise ScenarioError(
            f"scenario pack {pack.name!r}: {pack.manifest}: field `{field}` names `{name}`, "
            f"but {pack.tools_file} defines no function of that name"
        )
    if not marked(fn):
        raise ScenarioError(
            f"scenario pack {pack.name!r}: {pack.tools_file}: `{name}` is not decorated with {decorator} "
            f"(from polyglm.scenarios.tooling import {decorator[1:]})"
        )
    return fn
