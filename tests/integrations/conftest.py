"""The standard suites' async tests run under pytest-asyncio (the project keeps its default strict mode)."""

from __future__ import annotations

import inspect

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark the suites' coroutine tests `asyncio` before pytest-asyncio collects them."""
    if name.startswith("test_") and inspect.iscoroutinefunction(obj):
        marks = [m.name for m in getattr(obj, "pytestmark", [])]
        if "asyncio" not in marks:
            pytest.mark.asyncio(obj)


# Measured capability gaps of the offline LM inside a parametrised standard test (an override of the whole
# test would have to xfail every parameter): test id -> reason.
STANDARD_TEST_GAPS = {
    "test_structured_output[pydantic]": "Gemma-3-270M + delta leaves out required fields of a pydantic schema "
    "(it wrote {'setup': 'cat_joke'} for a Joke with setup and punchline)",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = STANDARD_TEST_GAPS.get(item.name)
        if reason and "TestChatPolyglmIntegration" in item.nodeid:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))
