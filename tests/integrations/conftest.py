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
