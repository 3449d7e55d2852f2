"""Platforms for the LangChain tests, loaded once per test process.

The standard suites build a new model or retriever for every test from properties (no fixtures), so the
classes under test get an already loaded platform through their `platform=` field from here.
"""

from __future__ import annotations

from functools import cache


@cache
def platform(profile: str):
    from polyglm.platform.config import load_profile
    from polyglm.platform.loader import load_platform
    from polyglm.platform.prepare import prepare_profile

    prepare_profile(load_profile(profile))  # a no-op once prepared (tiny builds in seconds the first time)
    return load_platform(profile, device="cpu")
