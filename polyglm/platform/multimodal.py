"""Encoders + adapters + language model: media in, features in the LM's space, fused generation."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polyglm.platform.adapters import AdapterError, load_adapter, output_length
from polyglm.platform.engine import GenerationOptions, stream_tokens
from polyglm.platform.fusion import MediaFeatures, build_batch, ensure_placeholder_tokens
from polyglm.platform.inventory import ADAPTER_ROOT, STAGE2_MANIFEST
from polyglm.platform.loader import Platform
from polyglm.platform.locate import resolve_part
from polyglm.platform.recipes import hash_into

MODALITY_ROLE = {"image": "vision", "audio": "speech"}


@dataclass(frozen=True)
class EncodedFile:
    """One input of a batch: its features, or why it could not be used (the others still succeed)."""

    name: str  # file name as the user gave it
    features: MediaFeatures | None  # in the LM space; None when the file failed
    error: str | None  # the InputError message naming the file and the problem


WEIGHT_SUFFIXES = (".safetensors", ".pt", ".bin", ".pth")
_HASHES: dict[str, str] = {}  # per process: hashing a 0.5 GB LM takes about a second


def weights_hash(path: Path) -> str:
    """sha256 prefix over a part's weight files, memoised by (path, size, mtime) next to the cache."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
    signature = json.dumps([(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files])
    memo = _HASHES
    if signature not in memo:
        digest = hashlib.sha256()
        for file in files:
            hash_into(digest, file)
        memo[signature] = digest.hexdigest()[:16]
    return memo[signature]


def load_media(modality: str, source: Path | bytes, **kwargs: Any) -> Any:
    """A decoded image (PIL) or 16 kHz mono clip (numpy), with media.py's checks and clear errors."""
    from polyglm.platform import media

    return (media.load_image if modality == "image" else media.load_audio)(source, **kwargs)


def part_identity(platform: Platform, role: str) -> tuple[str, str]:
    """(id, weights hash) of a part: what adapter manifests record and check."""
    spec = platform.profile.part(role)
    return spec.display, weights_hash(resolve_part(platform.profile, role, platform.settings))


@dataclass
class MultimodalModel:
    """A Platform plus one projector per modality."""

    platform: Platform
    projectors: dict[str, Any] = field(default_factory=dict)  # modality -> projector module
    placeholder_ids: dict[str, int] = field(default_factory=dict)
    media_lora: Any = None  # stage-2 LoRA (a PeftModel over the platform's LM), active only for media turns
    _lora_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.placeholder_ids = ensure_placeholder_tokens(self.platform.lm.tokenizer)

    @property
    def lm(self):
        return self.platform.lm

    def attach(self, modality: str, projector: Any) -> None:
        self.projectors[modality] = projector.to(self.platform.device)

    def encoder_features_images(self, images: Sequence[Any]) -> list[torch.Tensor]:
        """Raw (T, D_enc) vision features per image, encoded in one batch."""
        return list(self.platform.vision.encode(images).float())

    def encoder_features_audio(self, clips: Sequence[Any]) -> list[torch.Tensor]:
        return [f.float() for f in self.platform.speech.encode_clips(clips)]

    def encoder_features(self, modality: str, media: Sequence[Any]) -> list[torch.Tensor]:
        encode = self.encoder_features_images if modality == "image" else self.encoder_features_audio
        return encode(media)

    def project(
        self, modality: str, features: Sequence[torch.Tensor], names: Sequence[str] = ()
    ) -> list[MediaFeatures]:
        """Encoder features -> MediaFeatures in the LM space (no grad; training calls the projector itself)."""
        projector = self._projector(modality)
        names = list(names) or [""] * len(features)
        with torch.inference_mode():
            return [
                MediaFeatures(modality, projector(f[None].to(self.platform.device))[0], name)
                for f, name in zip(features, names, strict=True)
            ]

    def encode_files(
        self, modality: str, sources: Sequence[Path | bytes], names: Sequence[str] = (), limits: Any = None
    ) -> list[EncodedFile]:
        """Decode, encode in one batch and project; bad files get an error entry instead of failing the batch."""
        from polyglm.platform import media
        from polyglm.platform.errors import InputError

        names = list(names) or [s.name if isinstance(s, Path) else f"upload {i + 1}" for i, s in enumerate(sources)]

        def decode(source: Path | bytes, name: str) -> tuple[Any, str | None]:
            try:
                return load_media(modality, source, name=name, limits=limits or media.DEFAULT_LIMITS), None
            except InputError as exc:
                return None, str(exc)

        # Decoding waits on ffmpeg processes and PIL's C code, both outside the GIL: threads overlap it.
        with ThreadPoolExecutor(max_workers=max(1, min(len(sources), os.cpu_count() or 1, 8))) as pool:
            outcomes = list(pool.map(decode, sources, names))  # in input order
        decoded = {i: value for i, (value, error) in enumerate(outcomes) if error is None}
        errors = {i: error for i, (_, error) in enumerate(outcomes) if error is not None}
        good = sorted(decoded)
        features = self.encoder_features(modality, [decoded[i] for i in good]) if good else []
        projected = self.project(modality, features, [names[i] for i in good]) if good else []
        features = dict(zip(good, projected, strict=True))
        return [EncodedFile(names[i], features.get(i), errors.get(i)) for i in range(len(names))]

    def slots(self, modality: str, frames: int) -> int:
        return output_length(self._projector(modality), frames)

    def _projector(self, modality: str):
        if modality not in self.projectors:
            raise AdapterError(
                f"no {modality} adapter loaded for profile {self.platform.profile.name!r}; "
                f"train one with `polyglm train-adapter --profile {self.platform.profile.name} --modality {modality}`"
            )
        return self.projectors[modality]

    def stream(self, messages: Sequence[dict], options: GenerationOptions | None = None) -> Iterator[int]:
        """Token ids of the reply to messages whose contents may hold MediaFeatures; the stage-2 LoRA
        (when loaded) is switched on for exactly this generation."""
        batch = build_batch(self.lm, [messages], self.placeholder_ids)
        device = self.platform.device
        with self.media_lora_on():
            yield from stream_tokens(
                self.lm.model,
                prompt_ids=None,
                stop_ids=self.lm.stop_token_ids,
                options=options or GenerationOptions(),
                inputs_embeds=batch.inputs_embeds.to(device=device, dtype=self.lm.model.dtype),
                attention_mask=batch.attention_mask.to(device),
            )

    @contextmanager
    def media_lora_on(self) -> Iterator[None]:
        """Stage-2 LoRA layers active inside, off outside: text-only turns keep the base LM's answers.
        One media generation at a time, since the switch is on shared modules."""
        if self.media_lora is None:
            yield
            return
        with self._lora_lock:
            self.media_lora.base_model.enable_adapter_layers()
            try:
                yield
            finally:
                self.media_lora.base_model.disable_adapter_layers()

    def generate_text(self, messages: Sequence[dict], options: GenerationOptions | None = None) -> str:
        return self.lm.tokenizer.decode(list(self.stream(messages, options)), skip_special_tokens=True)


def load_multimodal(platform: Platform, modalities: Sequence[str] | None = None) -> MultimodalModel:
    """A MultimodalModel with the profile's shipped adapters attached (pairing checked).

    Where the profile names a `stage2:` folder, its projectors replace the stage-1 ones and its LoRA is
    applied to the LM for media turns, unless a scenario LoRA is already on the LM (then stage 1 only)."""
    model = MultimodalModel(platform)
    lm_id, lm_hash = part_identity(platform, "language_model")
    stage2 = stage2_folder(platform)
    for modality, relative in platform.profile.adapters.items():
        if modalities is not None and modality not in modalities:
            continue
        folder = stage2 / modality if stage2 and (stage2 / modality).is_dir() else ADAPTER_ROOT / relative
        encoder_id, encoder_hash = part_identity(platform, MODALITY_ROLE[modality])
        projector, _ = load_adapter(folder, encoder_id, encoder_hash, lm_id, lm_hash)
        model.attach(modality, projector)
    if stage2:  # once per platform: a second injection would stack a second LoRA on the same layers
        model.media_lora = platform.cached("media_lora", lambda: apply_media_lora(platform, stage2, lm_id, lm_hash))
    return model


def stage2_folder(platform: Platform) -> Path | None:
    """The profile's shipped stage-2 folder when it holds a stage-2 run and no scenario LoRA is applied."""
    from peft import PeftModel

    relative = platform.profile.stage2
    folder = ADAPTER_ROOT / relative if relative else None
    if folder is None or not (folder / STAGE2_MANIFEST).is_file() or isinstance(platform.lm.model, PeftModel):
        return None
    return folder


def apply_media_lora(platform: Platform, folder: Path, lm_id: str, lm_hash: str):
    """The stage-2 LoRA injected into the platform's LM, switched off until a media turn switches it on."""
    from peft import PeftModel

    manifest = json.loads((folder / STAGE2_MANIFEST).read_text())
    if (manifest.get("lm_id"), manifest.get("lm_hash")) != (lm_id, lm_hash):
        raise AdapterError(
            f"stage-2 adapter {folder} was trained on {manifest.get('lm_id')} (weights {manifest.get('lm_hash')}), "
            f"not {lm_id} (weights {lm_hash}); retrain it with `polyglm train-adapter --stage 2`"
        )
    lora = PeftModel.from_pretrained(platform.lm.model, folder / manifest["lora"]["folder"], is_trainable=False)
    lora.base_model.disable_adapter_layers()
    return lora.eval()


@contextmanager
def text_turn(platform: Platform) -> Iterator[None]:
    """Hold the stage-2 switch during a text-only generation: a media turn in another thread (two app
    sessions, two API requests) must not switch the shared LoRA layers on under it."""
    model = platform.derived("multimodal")
    if model is None or model.media_lora is None:
        yield
        return
    with model._lora_lock:
        yield


def drop_media_lora(platform: Platform) -> None:
    """Take the stage-2 LoRA back out of the LM (before a scenario LoRA goes on); media turns then use stage 1."""
    platform.forget("multimodal")
    lora = platform.forget("media_lora")
    if lora is not None:
        lora.unload()


def multimodal_for(platform: Platform) -> MultimodalModel:
    """The platform's multimodal model with its shipped adapters, built once and kept with the platform."""
    return platform.cached("multimodal", lambda: load_multimodal(platform))
