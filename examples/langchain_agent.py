"""A LangChain 1.x agent on polyglm: a pack's knowledge base and tools, driven by ChatPolyglm.

    HF_HUB_OFFLINE=1 .venv/bin/python examples/langchain_agent.py \
        --pack customer_service --question "How long does a refund take to reach Alipay?"

The agent (`langchain.agents.create_agent`) gets three kinds of parts, all from polyglm:
- the model: `ChatPolyglm` (the profile's language model, tools described in its prompt);
- the pack's knowledge base: `PackRetriever(...).as_tool()`, which shows passages as `[doc#n] title`;
- the pack's own tools: `pack_tools(pack)`, each run in polyglm's killable worker under its time limit.

A small offline model rarely decides on its own to look things up, so a middleware forces the knowledge
base search on the first model call of each question (`tool_choice`, which ChatPolyglm enforces by
starting the reply with the call); later calls are the model's own. `ModelCallLimitMiddleware` caps
the loop, since a 135M model may keep calling tools.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

KB_TOOL = "search_kb"


def search_first(request: Any, handler: Callable[[Any], Any]) -> Any:
    """Force the knowledge-base search until the current question has a tool result."""
    from langchain_core.messages import HumanMessage, ToolMessage

    last_human = max((i for i, m in enumerate(request.messages) if isinstance(m, HumanMessage)), default=-1)
    if not any(isinstance(m, ToolMessage) for m in request.messages[last_human + 1 :]):
        request = request.override(tool_choice=KB_TOOL)
    return handler(request)


def build_agent(
    pack: str = "customer_service",
    lang: str = "en",
    profile: str = "offline",
    platform: Any = None,
    max_tokens: int = 160,
):
    """The agent graph: ChatPolyglm + the pack's retriever tool + the pack's tools, the pack's system prompt."""
    from langchain.agents import create_agent
    from langchain.agents.middleware import ModelCallLimitMiddleware, wrap_model_call

    from polyglm.integrations.langchain import ChatPolyglm, PackRetriever, pack_tools
    from polyglm.scenarios.loader import load_pack, load_tools, render_system_prompt

    chat = ChatPolyglm(profile=profile, platform=platform, lang=lang, max_tokens=max_tokens)
    shared = chat.get_platform()  # one platform (one copy of each model) for the model and the retriever
    kb = PackRetriever(pack=pack, lang=lang, k=2, platform=shared).as_tool(
        name=KB_TOOL, description=f"Search the {pack.replace('_', ' ')} knowledge base for policies and facts."
    )
    scenario = load_pack(pack)
    return create_agent(
        chat,
        [kb, *pack_tools(pack)],
        system_prompt=render_system_prompt(scenario, lang, load_tools(scenario)),
        middleware=[wrap_model_call(search_first), ModelCallLimitMiddleware(run_limit=3, exit_behavior="end")],
    )


def ask(agent: Any, question: str) -> list:
    """The agent's messages for one question: the question, tool calls, tool results, the answer."""
    return agent.invoke({"messages": [{"role": "user", "content": question}]})["messages"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", default="customer_service")
    parser.add_argument("--lang", default="en")
    parser.add_argument("--profile", default="offline")
    parser.add_argument("--question", default="How long does a refund take to reach Alipay?")
    args = parser.parse_args(argv)
    for message in ask(build_agent(args.pack, args.lang, args.profile), args.question):
        for call in getattr(message, "tool_calls", []):
            print(f"[{message.type}] calls {call['name']}({call['args']})")
        if message.content:
            print(f"[{message.type}] {message.content}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
