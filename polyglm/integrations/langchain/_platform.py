"""The platform behind a LangChain part: given, or loaded by `load_platform` on first use."""

from __future__ import annotations

import threading
from typing import Any

_FIRST_LOAD = threading.Lock()  # two threads' first calls must not build two platforms for one part


def platform_of(part: Any) -> Any:
    """`part.platform`, loaded from `part.profile` (and `part.device`) the first time it is needed."""
    if part.platform is None:
        from polyglm.platform.loader import load_platform

        with _FIRST_LOAD:
            if part.platform is None:
                part.platform = load_platform(part.profile, device=part.device)
    return part.platform


def generation_lock(platform: Any) -> threading.Lock:
    """One generation at a time on a platform's shared model (as the API's model worker), shared by every
    LangChain part that uses this platform: `batch()` runs calls in threads."""
    return platform.cached("langchain.generation_lock", threading.Lock)
