"""Module-level polyglm tools for the LangChain tool tests: the tool worker imports them by name."""

from __future__ import annotations

import time

from polyglm.scenarios.tooling import tool


@tool(timeout_s=1.0)
def slow_echo(text: str, seconds: float = 0.0) -> dict:
    """Echo a text after a pause.

    Args:
        text: What to echo.
        seconds: How long to sleep first.
    """
    if not text:
        raise ValueError("text must not be empty")
    time.sleep(seconds)
    return {"text": text}
