"""Scenario packs: one folder each under `packs/` (contract in SCHEMA.md).

Nothing heavy is imported here: torch loads only when a retriever embeds, jieba only when text
with CJK characters is tokenised.
"""

from polyglm.scenarios.loader import (
    few_shot_messages,
    list_packs,
    load_documents,
    load_pack,
    pack_summary,
    read_jsonl,
    render_system_prompt,
    scenarios_table,
)
from polyglm.scenarios.retrieval import (
    Hit,
    Retriever,
    build_retriever,
    evaluate_retrieval,
    quote_passages,
)
from polyglm.scenarios.schema import ScenarioError, ScenarioPack
from polyglm.scenarios.tooling import ToolCall, ToolSpec, call_tool, load_tools, state_dir, tool

__all__ = [
    "Hit",
    "Retriever",
    "ScenarioError",
    "ScenarioPack",
    "ToolCall",
    "ToolSpec",
    "build_retriever",
    "call_tool",
    "evaluate_retrieval",
    "few_shot_messages",
    "list_packs",
    "load_documents",
    "load_pack",
    "load_tools",
    "pack_summary",
    "quote_passages",
    "read_jsonl",
    "render_system_prompt",
    "scenarios_table",
    "state_dir",
    "tool",
]
