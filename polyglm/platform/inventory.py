"""What is on this machine for each profile: parts present, sizes, licences, adapters. Loads nothing."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from polyglm.platform.config import Profile, Settings, available_profiles, load_profile
from polyglm.platform.errors import ModelMissingError
from polyglm.platform.locate import resolve_part
from polyglm.platform.precision import capability_summary

ADAPTER_ROOT = Path(__file__).resolve().parents[1] / "adapters"  # shipped inside the package
STAGE2_MANIFEST = "stage2.json"  # a stage-2 folder's record: the LM it pairs with, its LoRA, metrics


@dataclass(frozen=True)
class PartStatus:
    role: str
    kind: str
    source: str  # locator:ref from the profile
    licence: str
    present: bool
    path: str | None  # resolved files, when present
    bytes: int  # size on disk, 0 when missing
    problem: str | None  # the ModelMissingError message, when missing
    build: dict = field(default_factory=dict)  # what `models prepare` recorded (e.g. the merged delta and its data)


@dataclass(frozen=True)
class AdapterStatus:
    modality: str
    path: str
    present: bool
    metrics: dict  # from the adapter's manifest.json, when present


@dataclass(frozen=True)
class ProfileStatus:
    name: str
    title: str
    languages: tuple[str, ...]
    parts: list[PartStatus]
    adapters: list[AdapterStatus]
    compute: dict  # device, detected bf16 support, inference/training dtype and why (precision.capability_summary)
    stage2: AdapterStatus | None  # the stage-2 projectors + LoRA for media turns, when the profile names one

    @property
    def ready(self) -> bool:
        return all(p.present for p in self.parts)


def disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def part_status(profile: Profile, role: str, settings: Settings) -> PartStatus:
    spec = profile.part(role)
    try:
        path = resolve_part(profile, role, settings)
    except ModelMissingError as missing:
        return PartStatus(role, spec.kind, spec.display, spec.licence, False, None, 0, str(missing))
    return PartStatus(role, spec.kind, spec.display, spec.licence, True, str(path), disk_size(path), None,
                      build_info(path))  # fmt: skip


def build_info(path: Path) -> dict:
    """The build record `models prepare` leaves in a prepared part's folder ({} for other parts)."""
    from polyglm.platform.prepare import PART_INFO

    record = path / PART_INFO if path.is_dir() else None
    try:
        return json.loads(record.read_text()).get("info", {}) if record and record.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def adapter_status(modality: str, relative: str, manifest_name: str = "manifest.json") -> AdapterStatus:
    path = ADAPTER_ROOT / relative
    manifest = path / manifest_name
    metrics = json.loads(manifest.read_text()).get("metrics", {}) if manifest.is_file() else {}
    return AdapterStatus(modality, str(path), manifest.is_file(), metrics)


def profile_status(name: str, settings: Settings | None = None) -> ProfileStatus:
    settings = settings or Settings.from_env()
    profile = load_profile(name)
    return ProfileStatus(
        name=profile.name,
        title=profile.title,
        languages=profile.languages,
        parts=[part_status(profile, role, settings) for role in profile.parts],
        adapters=[adapter_status(m, rel) for m, rel in profile.adapters.items()],
        compute=compute_status(profile),
        stage2=adapter_status("image+audio (stage 2)", profile.stage2, STAGE2_MANIFEST) if profile.stage2 else None,
    )


def compute_status(profile: Profile) -> dict:
    from polyglm.platform.loader import pick_device

    device = pick_device()
    return capability_summary(device, profile.inference_dtype(device))


def inventory(settings: Settings | None = None) -> list[ProfileStatus]:
    return [profile_status(name, settings) for name in available_profiles()]


def inventory_json(statuses: list[ProfileStatus]) -> str:
    return json.dumps([asdict(s) | {"ready": s.ready} for s in statuses], indent=2, ensure_ascii=False)
