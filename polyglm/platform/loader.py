"""`load_platform(profile)`: the one factory that loads models. Parts load lazily, once each.

The UI wraps this in `st.cache_resource`; the CLI and API call it once per process. Nothing is
loaded at import time and there is no global model singleton.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyglm.platform.config import PART_ROLES, Profile, Settings, load_profile
from polyglm.platform.locate import resolve_part
from polyglm.platform.precision import DtypeChoice, choose_dtype, detect_hardware, dtype_name


def _part_loaders() -> dict[str, Callable[..., Any]]:
    """kind -> loader(path, options, device, dtype). Encoders come from their own registry."""
    from polyglm.encoders import encoder_class, encoder_kinds
    from polyglm.platform.embedding import MeanPooledEmbedder
    from polyglm.platform.language_model import LanguageModel
    from polyglm.platform.ocr import RapidOcr

    loaders = {"causal_lm": LanguageModel.load, "mean_pooled": MeanPooledEmbedder.load, "rapidocr": RapidOcr.load}
    loaders.update({kind: encoder_class(kind).load for kind in encoder_kinds()})
    return loaders


@dataclass(frozen=True)
class LoadStats:
    """What loading one part cost; shown on the Models page and by `polyglm models list`."""

    role: str
    kind: str
    source: str  # the profile's locator:ref
    path: str  # resolved files
    seconds: float
    parameters: int  # 0 where not a torch module
    device: str
    dtype: str


def pick_device(requested: str | None = None) -> str:
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Platform:
    """Models of one profile. Attribute access loads a part on first use; later uses are free."""

    profile: Profile
    settings: Settings
    device: str
    stats: dict[str, LoadStats] = field(default_factory=dict)
    _parts: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _derived: dict[str, Any] = field(default_factory=dict, repr=False)  # see `cached`
    _derive_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def dtype_choice(self) -> DtypeChoice:
        """Inference dtype of every part, from the one capability rule (the profile may force one)."""
        return choose_dtype("inference", self.profile.inference_dtype(self.device), detect_hardware(self.device))

    @property
    def dtype(self):
        return self.dtype_choice.torch_dtype

    def training_dtype(self, requested: str | None = None) -> DtypeChoice:
        """dtype of the frozen LM while adapters or LoRA weights train on this platform's device."""
        return choose_dtype("training", requested, detect_hardware(self.device))

    def get(self, role: str) -> Any:
        if role not in PART_ROLES:
            raise KeyError(f"unknown part {role!r}; parts are {', '.join(PART_ROLES)}")
        with self._lock:  # Streamlit reruns in threads: two first uses must not load twice
            if role not in self._parts:
                self._parts[role] = self._load(role)
            return self._parts[role]

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """Something built from this platform's parts once (e.g. the multimodal model), kept beside them.

        Built under its own re-entrant lock (a build may load parts, or build another derived thing):
        two first uses must not build twice, since the stage-2 build injects a LoRA into the shared LM."""
        with self._derive_lock:
            if key not in self._derived:
                self._derived[key] = build()
            return self._derived[key]

    def derived(self, key: str) -> Any:
        """What `cached` built under `key`, or None when nothing was built yet."""
        return self._derived.get(key)

    def forget(self, key: str) -> Any:
        """Drop and return what `cached` built under `key` (None when nothing was)."""
        with self._derive_lock:
            return self._derived.pop(key, None)

    def loaded(self) -> list[str]:
        return [role for role in PART_ROLES if role in self._parts]

    @property
    def lm(self):
        return self.get("language_model")

    @property
    def vision(self):
        return self.get("vision")

    @property
    def speech(self):
        return self.get("speech")

    @property
    def embedder(self):
        return self.get("embedding")

    @property
    def ocr(self):
        return self.get("ocr")

    def _load(self, role: str) -> Any:
        spec = self.profile.part(role)
        path = resolve_part(self.profile, role, self.settings)
        loaders = _part_loaders()
        if spec.kind not in loaders:
            raise KeyError(
                f"profile {self.profile.name!r}: {role} has unknown kind {spec.kind!r}; known: {sorted(loaders)}"
            )
        started = time.perf_counter()
        part = loaders[spec.kind](path, dict(spec.options), self.device, self.dtype)
        self.stats[role] = LoadStats(
            role=role,
            kind=spec.kind,
            source=spec.display,
            path=str(path),
            seconds=time.perf_counter() - started,
            parameters=_count_parameters(part),
            device=self.device,
            dtype=dtype_name(self.dtype),
        )
        return part


def _count_parameters(part: Any) -> int:
    model = getattr(part, "model", None)
    parameters = getattr(model, "parameters", None)
    return sum(p.numel() for p in parameters()) if callable(parameters) else 0


def load_platform(
    profile: str | Profile = "offline", device: str | None = None, settings: Settings | None = None
) -> Platform:
    """The platform for `profile`, with nothing loaded yet; parts load on first use."""
    resolved = load_profile(profile) if isinstance(profile, str) else profile
    return Platform(profile=resolved, settings=settings or Settings.from_env(), device=pick_device(device))


def resolve_all(platform: Platform) -> dict[str, Path]:
    """Every part's files, raising the first ModelMissingError: a cheap check before loading."""
    return {role: resolve_part(platform.profile, role, platform.settings) for role in platform.profile.parts}
