"""Speech through openai-whisper: the encoder's frame features for adapters, and plain transcription.

A voice note up to 30 s long is transcribed in one decoding pass without timestamps. With timestamps (openai-
whisper's default) a short clip is often decoded twice (it seeks back to the last timestamp of an unfinished
segment), and the transcripts were worse: on the social_sentiment pack's 50 English validation voice notes the
fused reading rose from 30 to 33 right without them, at the same time per clip (ad hoc, 2026-12-02; README).
Longer audio keeps the timestamps, which let transcribe cut its 30 s windows between words. The language
detection reads the same encoder states as the adapter features (one 30 s window, zero-padded), so a voice
note's window is encoded for both once.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    # the last few windows' encoder states, by content: a voice note's features and language share one pass
    shared: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)
    lock: Any = field(default_factory=threading.Lock, repr=False, compare=False)

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
        import whisper

        if isinstance(audio, str | Path):  # whisper hands the path to ffmpeg: `-x.wav` must not read as an option
            audio = whisper.load_audio(str(Path(audio).absolute()))
        audio = torch.as_tensor(audio, dtype=torch.float32)
        if language is None and self.multilingual and languages:
            language = self.likeliest_language(audio, languages)
        return self.model.transcribe(audio, language=language, fp16=self.dtype == torch.float16, temperature=0.0,
                                     verbose=None, without_timestamps=audio.shape[0] <= WINDOW_SAMPLES,
                                     suppress_tokens=[-1, self.no_timestamps_token])  # fmt: skip

    @property
    def no_timestamps_token(self) -> int:
        """<|notimestamps|> is never text, but whisper does not suppress it in what it samples: the tiny profile's
        random Whisper sampled nothing else, 224 times, and wrote an empty transcript."""
        from whisper.tokenizer import get_tokenizer

        return get_tokenizer(self.multilingual, num_languages=self.model.num_languages).no_timestamps

    def window_states(self, window: Any):
        """(1500, D) encoder states of up to 30 s of audio (zero-padded), kept for the next few calls."""
        return self.states_of([window])[0]

    def states_of(self, windows: Sequence[Any], batch_size: int = 8) -> list:
        """`window_states` for several windows: the ones not kept are encoded in batches."""
        import torch

        keys = [hashlib.sha1(window.numpy().tobytes()).hexdigest() + f":{window.shape[0]}" for window in windows]
        with self.lock:
            found = {key: self.shared[key] for key in keys if key in self.shared}
        missing = [i for i, key in enumerate(keys) if key not in found]
        for start in range(0, len(missing), batch_size):
            batch = missing[start : start + batch_size]
            with torch.inference_mode():
                states = self.model.encoder(torch.stack([self._mel(windows[i]) for i in batch]))
            found.update({keys[i]: state for i, state in zip(batch, states, strict=True)})
        with self.lock:
            for key in keys:
                self.shared[key] = found[key]
                self.shared.move_to_end(key)
            while len(self.shared) > SHARED_WINDOWS:
                self.shared.popitem(last=False)
        return [found[key] for key in keys]

    def likeliest_language(self, audio_16k: Any, languages: Sequence[str]) -> str | None:
        """The most probable of `languages` (whisper codes; others ignored) on the first 30 s, or None."""
        import torch
        from whisper.tokenizer import LANGUAGES

        known = [code for code in languages if code in LANGUAGES]
        if not known:
            return None
        states = self.window_states(torch.as_tensor(audio_16k, dtype=torch.float32)[:WINDOW_SAMPLES])
        with torch.inference_mode():
            _, probabilities = self.model.detect_language(states)
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
        states = self.states_of([window for _, window in windows], batch_size)
        for (clip_index, window), state in zip(windows, states, strict=True):
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
# how `transcribe` decodes: it names cached transcripts, so a change of decoding is not answered from the cache
TRANSCRIPT_FORM = "greedy-one-window-no-timestamps-notimestamps-suppressed"
SHARED_WINDOWS = 8  # windows whose encoder states are kept (~3 MB each for Whisper-base in fp32)


def _windows(audio):
    return [audio[i : i + WINDOW_SAMPLES] for i in range(0, max(1, audio.shape[0]), WINDOW_SAMPLES)]
