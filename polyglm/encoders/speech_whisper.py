"""Speech through openai-whisper: the encoder's frame features for adapters, and plain transcription."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyglm.encoders import register


@register("whisper")
@dataclass
class WhisperSpeechEncoder:
    modality = "audio"
    model: Any  # whisper.model.Whisper in eval mode
    device: Any
    dtype: Any
    name: str  # checkpoint file name shown to users

    @classmethod
    def load(cls, path: Path, options: dict, device, dtype) -> WhisperSpeechEncoder:
        import whisper

        file = path / "model.pt" if path.is_dir() else path
        model = whisper.load_model(str(file), device=device)
        model.to(dtype=dtype).eval()
        return cls(model=model, device=device, dtype=dtype, name=file.name)

    @property
    def multilingual(self) -> bool:
        return self.model.is_multilingual

    def transcribe(self, audio: Any, language: str | None = None) -> dict:
        """audio: a file path or a 16 kHz mono float32 array. Returns whisper's result dict."""
        import torch

        fp16 = self.dtype == torch.float16
        return self.model.transcribe(audio, language=language, fp16=fp16, temperature=0.0, verbose=None)

    def encode(self, audio_16k: Any):
        """(1, 1500, D) encoder states for up to 30 s of 16 kHz mono audio."""
        import torch
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.as_tensor(audio_16k)), self.model.dims.n_mels)
        with torch.inference_mode():
            return self.model.encoder(mel[None].to(device=self.device, dtype=self.dtype))
