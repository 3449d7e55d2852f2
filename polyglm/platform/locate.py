"""Turn a profile part into files on disk, offline, or say exactly how to get them.

One resolver per locator key (see `config.LOCATOR_KEYS`); nothing here touches the network.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from polyglm.platform.config import Profile, Settings
from polyglm.platform.errors import ModelMissingError

WHISPER_ROOT = Path("~/.cache/whisper").expanduser()


def prepared_dir(settings: Settings, name: str) -> Path:
    return settings.cache_dir / "parts" / name


def _prepared(profile: Profile, role: str, ref: str, settings: Settings) -> Path:
    path = prepared_dir(settings, ref)
    if not path.exists():
        raise ModelMissingError(
            f"profile {profile.name!r}: {role} {ref!r} is not prepared (looked in {path}). "
            f"Run: polyglm models prepare --profile {profile.name}"
        )
    return path


def _hub(profile: Profile, role: str, ref: str, settings: Settings) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(ref, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        raise ModelMissingError(
            f"profile {profile.name!r}: {role} {ref!r} is not in the local Hugging Face cache. "
            f"On a machine with hub access run `hf download {ref}` (copy ~/.cache/huggingface "
            f"here), or set `path:` for {role} in the profile to a local folder with its files"
        ) from None


def _path(profile: Profile, role: str, ref: str, settings: Settings) -> Path:
    path = Path(ref).expanduser()
    if not path.exists():
        raise ModelMissingError(
            f"profile {profile.name!r}: {role} path {path} does not exist; "
            f"put the weights there or edit `path:` for {role} in the profile"
        )
    return path


def _whisper(profile: Profile, role: str, ref: str, settings: Settings) -> Path:
    path = WHISPER_ROOT / f"{ref}.pt"
    if not path.is_file():
        raise ModelMissingError(
            f"profile {profile.name!r}: {role} Whisper checkpoint {path} is missing. On a machine "
            f"with network run `python -c \"import whisper; whisper.load_model('{ref}')\"` and copy "
            f"{path} here, or set `path:` for {role} to a .pt checkpoint"
        )
    return path


def _package(profile: Profile, role: str, ref: str, settings: Settings) -> Path:
    spec = importlib.util.find_spec(ref)
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError(
            f"profile {profile.name!r}: {role} needs the Python package {ref!r}; "
            f"run `make install` (or pip install -c constraints.txt -e .)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


RESOLVERS: dict[str, Callable[[Profile, str, str, Settings], Path]] = {
    "prepared": _prepared,
    "hub": _hub,
    "path": _path,
    "whisper": _whisper,
    "package": _package,
}


def resolve_part(profile: Profile, role: str, settings: Settings | None = None) -> Path:
    """Files for `role` of `profile`, or ModelMissingError naming profile, file and fix."""
    spec = profile.part(role)
    return RESOLVERS[spec.locator](profile, role, spec.ref, settings or Settings.from_env())
