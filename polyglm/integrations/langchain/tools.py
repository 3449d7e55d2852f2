"""A scenario pack's tools as LangChain tools.

Each is a `StructuredTool` whose `args_schema` is the JSON schema polyglm derives from the tool's type
hints and docstring (`ToolSpec.parameters`), so a model sees exactly what the pack's own chat loop
shows. A call goes through `polyglm.scenarios.tooling.call_tool`: arguments checked against that
schema, the tool run in the killable worker process under its `timeout_s`. Bad arguments, a tool's
`ValueError` and a timeout come back as a ToolMessage with status "error" whose content is the
`{"error": ...}` observation the pack's loop would show its model; any other exception is a bug in the
tool and propagates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Optional

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, create_model

from polyglm.scenarios.tooling import call_tool, tool_spec


class PackTool(StructuredTool):
    """A pack tool (see the module docstring). `metadata` holds its pack and time limit."""

    def get_input_schema(self, config: Any = None) -> type[BaseModel]:
        """A pydantic model of the same JSON schema (LangChain's helpers want a model class)."""
        return input_model(self.name, self.args_schema)


def pack_tools(pack: str) -> list[PackTool]:
    """The tools `pack` lists in scenario.yaml, in that order."""
    from polyglm.scenarios.loader import load_pack
    from polyglm.scenarios.tooling import load_tools

    return [as_langchain_tool(fn, pack) for fn in load_tools(load_pack(pack))]


def pack_tool(pack: str, name: str) -> PackTool:
    """One of `pack`'s tools by name."""
    from polyglm.platform.errors import InputError

    tools = {tool.name: tool for tool in pack_tools(pack)}
    if name not in tools:
        raise InputError(f"pack {pack!r} has no tool {name!r}; its tools are {', '.join(tools) or '(none)'}")
    return tools[name]


def as_langchain_tool(fn: Any, pack: str | None = None) -> PackTool:
    """A polyglm `@tool` function as a LangChain tool run through `call_tool`."""
    spec = tool_spec(fn)

    def run(**arguments: Any) -> tuple[str, dict]:
        call = call_tool(fn, arguments)
        if not call.ok:
            raise ToolException(call.observation())
        return call.observation(), call.as_dict()

    return PackTool(
        name=spec.name,
        description=spec.description,
        args_schema=spec.parameters,
        func=run,
        response_format="content_and_artifact",  # content: the JSON the model reads; artifact: the call record
        handle_tool_error=_error_content,
        metadata={"pack": pack, "timeout_s": spec.timeout_s},
    )


def _error_content(error: ToolException) -> str:
    return str(error)


# ---------------------------------------------------------------- JSON schema (polyglm's subset) -> pydantic

_PRIMITIVES = {"string": str, "integer": int, "number": float, "boolean": bool}


def input_model(name: str, schema: Mapping[str, Any]) -> type[BaseModel]:
    """A strict pydantic model for the tool-schema subset `schema_for_type` writes."""
    required = set(schema.get("required", ()))
    fields = {}
    for prop, sub in schema.get("properties", {}).items():
        default = ... if prop in required else sub.get("default")
        fields[prop] = (_python_type(sub), Field(default, description=sub.get("description")))
    config = ConfigDict(extra="forbid", strict=True)
    return create_model(f"{name}_input", __config__=config, **fields)


def _python_type(schema: Mapping[str, Any]) -> Any:
    if "enum" in schema:
        kind: Any = Literal[tuple(schema["enum"])]
    elif schema.get("type") == "array":
        kind = list[_python_type(schema.get("items", {}))]
    elif schema.get("type") == "object":
        extra = schema.get("additionalProperties")
        kind = dict[str, _python_type(extra)] if isinstance(extra, Mapping) else dict
    else:
        kind = _PRIMITIVES.get(schema.get("type"), Any)
    return Optional[kind] if schema.get("nullable") else kind  # noqa: UP045 (a runtime-built type)
