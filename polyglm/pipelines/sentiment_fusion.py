"""One label from several modalities: a weighted product of each modality's calibrated probabilities.

A post with text, a picture and a voice note is scored once per modality (each prompt carries that
modality's adapter features and its OCR text or transcript), and the three calibrated distributions are
combined as p(y) ∝ Π_m p_m(y) ** w_m (a product of experts; with every w_m = 1, naive Bayes over
conditionally independent views). The weights say how far each modality is trusted: Whisper's transcript
of a voice note is far less reliable than the typed text, and scoring all modalities in one prompt made
the answer worse than the text alone (53.8 % against 86.0 % on the same posts), because the head never
saw such prompts. The weights are fitted by L-BFGS on validation posts (`bench/sentiment_fusion.py`,
every subset of two or more modalities of each post), stored in `fusion.json` beside the calibration,
and tied to the head and the calibration temperature they were fitted after. One modality alone is its
own calibrated distribution: a weight says how much a modality counts next to others, not how sure it is.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FUSION_FILE = Path("sentiment") / "fusion.json"  # under the profile's adapter folder
FUSION_COMMAND = "python bench/sentiment_fusion.py --profile {profile}"
MIN_PROBABILITY = 1e-6  # a calibrated probability is floored here before its log: one 0 must not veto a label


@dataclass(frozen=True)
class Fusion:
    """The modality weights, and whether they were fitted for this head and calibration."""

    weights: dict[str, float] = field(default_factory=dict)  # modality -> weight; missing modalities count 1.0
    status: str = "equal weights"  # "fitted" or why equal weights are used
    source: str = ""  # the fusion file, when one was read

    def weight(self, modality: str) -> float:
        return self.weights.get(modality, 1.0)

    def describe(self, modalities: Sequence[str]) -> str:
        """ "text 1.11, image 0.39 (fitted)": the weights that combined these modalities, and why."""
        return f"{', '.join(f'{m} {self.weight(m):.2f}' for m in modalities)} ({self.status})"


def fuse(probabilities: Mapping[str, Mapping[str, float]], fusion: Fusion) -> dict[str, float]:
    """p(y) ∝ Π_m p_m(y) ** w_m over the modalities given; one modality comes back unchanged."""
    views = list(probabilities.values())
    if len(views) == 1:
        return dict(views[0])
    labels = list(views[0])
    logits = [
        sum(fusion.weight(m) * math.log(max(p[label], MIN_PROBABILITY)) for m, p in probabilities.items())
        for label in labels
    ]
    top = max(logits)
    exp = [math.exp(v - top) for v in logits]
    return {label: e / sum(exp) for label, e in zip(labels, exp, strict=True)}


def subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every combination of two or more of `modalities`: what a post can carry together."""
    return [c for size in range(2, len(modalities) + 1) for c in itertools.combinations(modalities, size)]


def fit_weights(items: Sequence[tuple[Mapping[str, Mapping[str, float]], str]]) -> dict[str, float]:
    """Weights minimising the negative log-likelihood of the gold label under `fuse`, over every subset of
    two or more modalities of every item ((modality -> calibrated probabilities, gold label)); fitted as
    log-weights by L-BFGS, so they stay positive."""
    import torch

    modalities = sorted({m for probabilities, _ in items for m in probabilities})
    rows, masks, gold = [], [], []
    for probabilities, label in items:
        labels = list(next(iter(probabilities.values())))
        logs = [[math.log(max(probabilities[m][y], MIN_PROBABILITY)) if m in probabilities else 0.0
                 for y in labels] for m in modalities]  # fmt: skip
        for subset in subsets([m for m in modalities if m in probabilities]):
            rows.append(logs)
            masks.append([float(m in subset) for m in modalities])
            gold.append(labels.index(label))
    if not rows:
        raise ValueError("no item carries two or more modalities: nothing to fit the fusion weights on")
    logs = torch.tensor(rows, dtype=torch.float64)  # (rows, modalities, labels)
    mask = torch.tensor(masks, dtype=torch.float64)[:, :, None]
    target = torch.tensor(gold)
    log_w = torch.zeros(len(modalities), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_w], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        logits = (logs * mask * log_w.exp()[None, :, None]).sum(1)
        loss = torch.nn.functional.cross_entropy(logits, target)
        loss.backward()
        return loss

    optimiser.step(closure)
    return {m: round(float(w), 4) for m, w in zip(modalities, log_w.exp().tolist(), strict=True)}


def fusion_path(profile: str) -> Path:
    from polyglm.platform.inventory import ADAPTER_ROOT

    return ADAPTER_ROOT / profile / FUSION_FILE


def load_fusion(profile: str, head_sha256: str | None, temperature: float, path: Path | None = None) -> Fusion:
    """The fitted weights when `fusion.json` was fitted after this head and calibration temperature; equal
    weights with the reason otherwise."""
    path = path or fusion_path(profile)
    refit = FUSION_COMMAND.format(profile=profile)
    if not path.is_file():
        return Fusion(status=f"equal weights: no fusion fitted for profile {profile!r}; fit one with `{refit}`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        weights = {str(m): float(w) for m, w in record["weights"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Fusion(status=f"equal weights: {path} is unreadable ({exc}); refit with `{refit}`", source=str(path))
    if record.get("head") != head_sha256 or record.get("temperature") != temperature:
        fitted = f"head {str(record.get('head'))[:12]}, temperature {record.get('temperature')}"
        now = f"head {str(head_sha256)[:12]}, temperature {temperature}"
        return Fusion(status=f"equal weights: {path} was fitted for {fitted}, not {now}; refit with `{refit}`",
                      source=str(path))  # fmt: skip
    if not all(0 <= w <= 100 for w in weights.values()):
        return Fusion(status=f"equal weights: {path} has a weight out of range ({weights})", source=str(path))
    return Fusion(weights, "fitted", str(path))
