"""Shared fixtures. Tiny models for unit tests; the real offline profile only in tests marked `slow`.

Both profiles are prepared in the user's polyglm cache (POLYGLM_CACHE or ~/.cache/polyglm):
`make test` prepares `offline` before pytest starts, and `tiny` builds here in seconds, once.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def seed() -> int:
    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    return 0


@pytest.fixture(scope="session")
def tiny_platform():
    from polyglm.platform.config import load_profile
    from polyglm.platform.loader import load_platform
    from polyglm.platform.prepare import prepare_profile

    prepare_profile(load_profile("tiny"))
    return load_platform("tiny", device="cpu")


@pytest.fixture(scope="session")
def offline_platform():
    from polyglm.platform.config import load_profile
    from polyglm.platform.loader import load_platform
    from polyglm.platform.prepare import prepare_profile

    prepare_profile(load_profile("offline"))  # a no-op after `make test`'s prepare step
    return load_platform("offline", device="cpu")


@pytest.fixture(scope="session")
def smollm2_platform():
    """The previous offline LM, English only: it obeys instructions written in its input, so the tests that
    show the product's fences stopping an instruction need it (Gemma + polyglm's delta ignores them even
    unfenced). Prepared on first use (~20 s, the other parts are the offline profile's)."""
    from polyglm.platform.config import load_profile
    from polyglm.platform.loader import load_platform
    from polyglm.platform.prepare import prepare_profile

    prepare_profile(load_profile("smollm2"))
    return load_platform("smollm2", device="cpu")


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """POLYGLM_CACHE in a temporary folder: tool state and indexes never touch the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("POLYGLM_CACHE", str(cache))
    return cache


@pytest.fixture
def fresh_media_cache(tiny_platform, tmp_path: Path):
    """The tiny platform's media cache (features, OCR text, transcripts) in an empty folder for one test, so
    that what a test spies on (a transcription, an OCR read) really runs instead of coming from the cache."""
    from polyglm.platform.feature_cache import CacheOptions, FeatureCache

    tiny_platform.forget("media_cache")
    cache = tiny_platform.cached("media_cache", lambda: FeatureCache(CacheOptions(root=tmp_path / "media-cache")))
    yield cache
    tiny_platform.forget("media_cache")
