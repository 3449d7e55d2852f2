"""Settings and model profiles.

A profile is a YAML file in `polyglm/platform/profiles/` naming, for each part (language model,
vision and speech encoders, embedding model, OCR, adapters), where its weights come from. Parts are
located by exactly one of these keys, so the code never dispatches on string prefixes:

- `prepared: NAME`  built into the polyglm cache by `polyglm models prepare` (see `recipes.py`)
- `hub: ORG/NAME`   a Hugging Face hub id, read from the local HF cache only (never fetched)
- `path: DIR|FILE`  a local folder or file
- `whisper: NAME`   an openai-whisper checkpoint name (`~/.cache/whisper/NAME.pt`)
- `package: NAME`   files that ship inside an installed Python package (e.g. RapidOCR's ONNX models)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType

import yaml

from polyglm.platform.errors import ProfileError

PROFILE_DIR = Path(__file__).parent / "profiles"
DEFAULT_PROFILE = "offline"
LOCATOR_KEYS = ("prepared", "hub", "path", "whisper", "package")
PART_ROLES = ("language_model", "vision", "speech", "embedding", "ocr")


@dataclass(frozen=True)
class Settings:
    """The one configurable setting: where prepared models live."""

    cache_dir: Path  # POLYGLM_CACHE, default ~/.cache/polyglm

    @classmethod
    def from_env(cls) -> Settings:
        raw = os.environ.get("POLYGLM_CACHE") or "~/.cache/polyglm"
        return cls(cache_dir=Path(raw).expanduser())


@dataclass(frozen=True)
class PartSpec:
    """One model part of a profile."""

    role: str  # which slot it fills: language_model, vision, speech, embedding, ocr
    kind: str  # loader registry key (causal_lm, timm, whisper, mean_pooled, rapidocr)
    locator: str  # one of LOCATOR_KEYS: how `ref` is resolved to files
    ref: str  # the prepared name, hub id, path or whisper name
    licence: str = "unknown"  # shown by `polyglm models list`
    options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))  # kind-specific

    @property
    def display(self) -> str:
        return f"{self.locator}:{self.ref}"


@dataclass(frozen=True)
class MediaPolicy:
    """How attached images and voice notes reach the language model; each path can be switched off."""

    features: bool = True  # encoder -> trained adapter -> fused into the LM (needs the profile's adapter)
    ocr: bool = True  # text read from images, fenced as user material beside the features
    transcript: bool = True  # the speech model's transcript of voice notes, fenced beside the features

    def narrowed(self, other: MediaPolicy) -> MediaPolicy:
        """Both must allow a path: a pack can switch off what its profile offers, never the reverse."""
        return MediaPolicy(self.features and other.features, self.ocr and other.ocr,
                           self.transcript and other.transcript)  # fmt: skip

    @classmethod
    def from_dict(cls, raw: object, where: object) -> MediaPolicy:
        if raw is None:
            return cls()
        names = {"features", "ocr", "transcript"}
        if not isinstance(raw, dict) or not set(raw) <= names or not all(isinstance(v, bool) for v in raw.values()):
            raise ProfileError(f"{where}: `media:` takes true/false for {', '.join(sorted(names))}, got {raw!r}")
        return cls(**raw)


@dataclass(frozen=True)
class Profile:
    """A named set of parts; one code path serves every profile."""

    name: str  # file stem, e.g. offline
    title: str  # one line for humans
    description: str  # what it is for
    parts: Mapping[str, PartSpec]  # role -> part; a profile may omit roles it lacks
    adapters: Mapping[str, str]  # modality -> adapter folder (relative to the repo's adapters/)
    languages: tuple[str, ...]  # languages the LM handles well
    gpu_dtype: str = "auto"  # inference dtype on CUDA: auto (precision.choose_dtype), bfloat16 or float32
    cpu_dtype: str = "auto"  # inference dtype on CPU: auto (float32 unless a job measured bf16 safe), or forced
    media: MediaPolicy = field(default_factory=MediaPolicy)  # how attachments reach the LM (features, OCR, transcript)
    stage2: str = ""  # stage-2 folder (projectors + LoRA for media turns) relative to adapters/; "" = none

    def inference_dtype(self, device: str) -> str:
        """The dtype this profile asks for on `device` ("auto" leaves it to precision.choose_dtype)."""
        return self.gpu_dtype if device.startswith("cuda") else self.cpu_dtype

    def part(self, role: str) -> PartSpec:
        try:
            return self.parts[role]
        except KeyError:
            raise ProfileError(
                f"profile {self.name!r} has no {role} part; add a `{role}:` section to "
                f"{PROFILE_DIR / (self.name + '.yaml')} or pick another profile"
            ) from None


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


@cache
def load_profile(name: str) -> Profile:
    """Read and validate `profiles/<name>.yaml`; unknown names list the valid ones."""
    path = PROFILE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(
            f"unknown profile {name!r}; available: {', '.join(available_profiles())} "
            f"(profiles are YAML files in {PROFILE_DIR})"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile file {path} is not valid YAML: {exc}") from None
    return _profile_from_dict(name, raw, path)


def _profile_from_dict(name: str, raw: object, path: Path) -> Profile:
    if not isinstance(raw, dict):
        raise ProfileError(f"profile file {path} must hold a mapping at the top level")
    parts = {role: _part_from_dict(role, raw[role], path) for role in PART_ROLES if raw.get(role)}
    if "language_model" not in parts:
        raise ProfileError(f"profile file {path} needs a `language_model:` section")
    adapters = raw.get("adapters") or {}
    return Profile(
        name=name,
        title=str(raw.get("title", name)),
        description=str(raw.get("description", "")).strip(),
        parts=MappingProxyType(parts),
        adapters=MappingProxyType({str(k): str(v) for k, v in adapters.items() if v}),
        languages=tuple(raw.get("languages", ("en",))),
        gpu_dtype=str(raw.get("gpu_dtype", "auto")),
        cpu_dtype=str(raw.get("cpu_dtype", "auto")),
        media=MediaPolicy.from_dict(raw.get("media"), path),
        stage2=str(raw.get("stage2") or ""),
    )


def _part_from_dict(role: str, raw: object, path: Path) -> PartSpec:
    if not isinstance(raw, dict) or "kind" not in raw:
        raise ProfileError(f"{path}: `{role}` must be a mapping with a `kind:` key")
    locators = [key for key in LOCATOR_KEYS if key in raw]
    if len(locators) != 1:
        raise ProfileError(
            f"{path}: `{role}` needs exactly one of {', '.join(LOCATOR_KEYS)}; found {locators or 'none'}"
        )
    locator = locators[0]
    return PartSpec(
        role=role,
        kind=str(raw["kind"]),
        locator=locator,
        ref=str(raw[locator]),
        licence=str(raw.get("licence", "unknown")),
        options=MappingProxyType(dict(raw.get("options") or {})),
    )
