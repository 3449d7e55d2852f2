"""Speech through openai-whisper: the encoder's frame features for adapters, and plain transcription."""

from __future__ import annotations

from collections.abc import Sequence
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
        import torch
        from whisper.model import ModelDimensions, Whisper

        file = path / "model.pt" if path.is_dir() else path
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
        model = Whisper(ModelDimensions(**checkpoint["dims"]))
        model.load_state_dict(checkpoint["model_state_dict"])
        # whisper.load_model sets alignment heads only for its own named models; converted
        # checkpoints carry theirs, and word timestamps need them.
        if "alignment_heads" in checkpoint:
            model.set_alignment_heads(checkpoint["alignment_heads"])
        model.to(device=device, dtype=dtype).eval()
        return cls(model=model, device=device, dtype=dtype, name=file.name)

    @property
    def multilingual(self) -> bool:
        return self.model.is_multilingual

    def transcribe(self, audio: Any, language: str | None = None, languages: Sequence[str] = ()) -> dict:
        """audio: a file path or a 16 kHz mono float32 array. Returns whisper's result dict. `languages`: when
        no `language` is given, detect the spoken one among these only (whisper's own detection over ~100
        languages heard synthetic Mandarin as Thai, and then transcribed it in Thai script)."""
        import torch

        fp16 = self.dtype == torch.float16
        if isinstance(audio, str | Path):  # whisper hands the path to ffmpeg: `-x.wav` must not read as an option
            audio = str(Path(audio).absolute())
        if language is None and self.multilingual and languages:
            import whisper

            if isinstance(audio, str):  # decoded once, for the detection and the transcription
                audio = whisper.load_audio(audio)
            language = self.likeliest_language(audio, languages)
        return self.model.transcribe(audio, language=language, fp16=fp16, temperature=0.0, verbose=None)

    def likeliest_language(self, audio_16k: Any, languages: Sequence[str]) -> str | None:
        """The most probable of `languages` (whisper codes; others ignored) on the first 30 s, or None."""
        import torch
        import whisper
        from whisper.tokenizer import LANGUAGES

        known = [code for code in languages if code in LANGUAGES]
        if not known:
            return None
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.as_tensor(audio_16k)), self.model.dims.n_mels)
        with torch.inference_mode():
            _, probabilities = self.model.detect_language(mel.to(self.device, self.dtype))
        return max(known, key=lambda code: probabilities.get(code, 0.0))

    def encode(self, audio_16k: Any):
        """(1, 1500, D) encoder states for up to 30 s of 16 kHz mono audio (zero-padded)."""
        import torch

        with torch.inference_mode():
            return self.model.encoder(self._mel(torch.as_tensor(audio_16k))[None])

    def encode_clips(self, clips: Sequence[Any], batch_size: int = 8) -> list:
        """One (T_i, D) tensor per clip, at 50 frames/s, covering the whole clip.

        Clips longer than 30 s are split into 30 s windows that are encoded separately and joined,
        so nothing is silently truncated; the padding frames after each window's audio are cut.
        """
        import torch

        windows = [(i, w) for i, clip in enumerate(clips) for w in _windows(torch.as_tensor(clip, dtype=torch.float32))]
        pieces: list[list] = [[] for _ in clips]
        for start in range(0, len(windows), batch_size):
            batch = windows[start : start + batch_size]
            mels = torch.stack([self._mel(w) for _, w in batch])
            with torch.inference_mode():
                states = self.model.encoder(mels)
            for (clip_index, window), state in zip(batch, states, strict=True):
                frames = max(1, -(-window.shape[0] // SAMPLES_PER_FRAME))
                pieces[clip_index].append(state[:frames])
        return [torch.cat(p) for p in pieces]

    def encode_trimmed(self, audio_16k: Any):
        """(T, D) encoder states over the clip's own frames, at 50 frames/s, no 30 s padding: a 4 s clip
        costs a 4 s window, not a 30 s one. The attention sees only the clip, so the states differ from
        `encode_clips`'s; a head trained on these reads these (speech_syllables.py). Longer clips go in 30 s
        windows, joined."""
        import torch
        import whisper

        audio = torch.as_tensor(audio_16k, dtype=torch.float32)
        encoder, pieces = self.model.encoder, []
        for window in _windows(audio):
            mel = whisper.log_mel_spectrogram(window, self.model.dims.n_mels)  # 100 frames/s; conv2 halves them
            with torch.inference_mode():
                x = torch.nn.functional.gelu(encoder.conv1(mel[None].to(self.device, self.dtype)))
                x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
                x = x + encoder.positional_embedding[: x.shape[1]].to(x.dtype)
                for block in encoder.blocks:
                    x = block(x)
                pieces.append(encoder.ln_post(x)[0])
        return torch.cat(pieces)

    def _mel(self, audio):
        import whisper

        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(audio), self.model.dims.n_mels)
        return mel.to(device=self.device, dtype=self.dtype)


WINDOW_SAMPLES = 30 * 16_000  # Whisper's fixed receptive window
SAMPLES_PER_FRAME = 320  # 16 kHz, mel hop 160, encoder conv stride 2 -> 50 frames/s


def _windows(audio):
    return [audio[i : i + WINDOW_SAMPLES] for i in range(0, max(1, audio.shape[0]), WINDOW_SAMPLES)]
