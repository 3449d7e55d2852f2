"""examples/langchain_agent.py end to end on the offline profile: the pack's retriever and tools through
ChatPolyglm inside a LangChain 1.x agent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from tests.integrations.platforms import platform

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langchain_agent.py"


def load_example():
    spec = importlib.util.spec_from_file_location("langchain_agent_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.xfail(
    reason="measured 2026-11-30: Gemma-3-270M + delta repeats search_kb('alipay') after its result until the "
    "agent's call limit (3/3); SmolLM2 answered after one search. Next: a repeated identical call gets an answer",
    strict=False,
)
def test_agent_searches_the_pack_kb_and_answers_from_it(isolated_cache):
    example = load_example()
    # Replies capped at 48 tokens: the test checks the tool traffic and that an answer comes, on CI's budget.
    agent = example.build_agent("customer_service", "en", "offline", platform=platform("offline"), max_tokens=48)
    messages = example.ask(agent, "How long does a refund take to reach Alipay?")

    calls = [call for m in messages if isinstance(m, AIMessage) for call in m.tool_calls]
    assert calls and calls[0]["name"] == example.KB_TOOL
    results = [m for m in messages if isinstance(m, ToolMessage) and m.name == example.KB_TOOL]
    assert results and results[0].status == "success"
    docs = results[0].artifact
    assert docs and all(doc.metadata["pack"] == "customer_service" for doc in docs)
    assert any(doc.metadata["doc_id"].startswith("refund") for doc in docs)  # the refund-timeline passages
    assert all(f"[{doc.metadata['citation']}]" in results[0].content for doc in docs)  # cited for the model
    answer = messages[-1]
    assert isinstance(answer, AIMessage) and answer.text.strip()
    assert answer.response_metadata.get("model_provider") == "polyglm"  # the model's words, not a limit notice
