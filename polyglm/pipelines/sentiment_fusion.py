"""One label from several modalities: a weighted product of each modality's calibrated probabilities.

A post with text, a picture and a voice note is scored once per modality (each prompt carries that
modality's adapter features and its OCR text or transcript), and the calibrated distributions of the
modalities it carries are combined as p(y) ∝ Π_m p_m(y) ** w_m (a product of experts; with every w_m = 1,
naive Bayes over conditionally independent views). The weights say how far each modality is trusted next
to the others present: Whisper's transcript of a voice note is far less reliable than the typed text, and
scoring all modalities in one prompt made the answer worse than the text alone (53.8 % against 86.0 % on
the same posts), because the head never saw such prompts. Each combination of modalities (text+image,
text+image+audio, ...) has its own weights: one set shared by every combination had to serve image+audio,
where the picture is the best evidence, and text+image+audio, where it mostly repeats the text, and gave
the three together a worse log loss than the text alone on the validation posts (0.492 against 0.477).
The weights are fitted by L-BFGS on validation posts (`bench/sentiment_fusion.py`), stored in
`fusion.json` beside the calibration, and tied to the head and the calibration temperature they were
fitted after. One modality alone is its own calibrated distribution.

A picture or a voice note is itself read two ways, its views: the adapter prompt above, and the words read
off it (OCR text, Whisper transcript) scored as a typed post by the text head. The text head reads a
card's words far better than the media head reads the same words fenced beside the picture's features
(81.7 % against 69.9 % on the held-out cards). A modality's distribution is the weighted product of its
views, with weights fitted on posts that carry that modality alone (`views` in `fusion.json`); the
modalities are then combined as above. Where no weights were fitted, a modality's views count 1/n each (a
geometric mean), so that two readings of one picture do not count as two pieces of evidence.

Chinese words are read a third way, by the character n-gram model (sentiment_ngram.py), so a Chinese
picture has three views and an English one two. View weights are fitted per set of views ("image+ngram+ocr"
apart from "image+ocr"), as modality weights are per combination: the OCR text needs less weight where the
n-gram model reads the same words beside it.
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
MIN_FIT_POSTS = 10  # fewer validation posts with a set of views than this: that set keeps 1/n each


def combination(names: Sequence[str]) -> str:
    """The key of a combination of modalities (or of one modality's views) in `fusion.json`:
    "audio+image+text" (sorted, any order in)."""
    return "+".join(sorted(names))


@dataclass(frozen=True)
class Fusion:
    """The weights, and whether they were fitted for this head and calibration."""

    # combination -> modality -> weight; a combination the file does not have counts each modality 1.0
    weights: dict[str, dict[str, float]] = field(default_factory=dict)
    status: str = "equal weights"  # "fitted" or why equal weights are used
    source: str = ""  # the fusion file, when one was read
    # modality -> set of views ("image+ngram+ocr") -> view -> weight; a set the file does not have: 1/n each
    views: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def modality_weights(self, modalities: Sequence[str]) -> dict[str, float]:
        fitted = self.weights.get(combination(modalities), {})
        return {m: fitted.get(m, 1.0) for m in modalities}

    def view_weights(self, modality: str, views: Sequence[str]) -> dict[str, float]:
        fitted = self.views.get(modality, {}).get(combination(views), {})
        return {view: fitted.get(view, 1.0 / len(views)) for view in views}

    def describe(self, modalities: Sequence[str], views: Mapping[str, Sequence[str]] | None = None) -> str:
        """ "text 0.94, image 0.20 [image 0.15, ocr 0.78] (fitted)": the weights that combined these
        modalities (and, in brackets, the views of a modality read more than one way), and why."""
        weights = self.modality_weights(modalities) if len(modalities) > 1 else {m: 1.0 for m in modalities}

        def one(m: str) -> str:
            read = list((views or {}).get(m, ()))
            inner = self.view_weights(m, read) if len(read) > 1 else {}
            return f"{m} {weights[m]:.2f}" + (f" [{', '.join(f'{v} {w:.2f}' for v, w in inner.items())}]"
                                              if inner else "")  # fmt: skip

        return f"{', '.join(one(m) for m in modalities)} ({self.status})"


def weighted_product(
    probabilities: Mapping[str, Mapping[str, float]], weights: Mapping[str, float]
) -> dict[str, float]:
    """p(y) ∝ Π_k p_k(y) ** weights[k]; one distribution comes back unchanged."""
    views = list(probabilities.values())
    if len(views) == 1:
        return dict(views[0])
    labels = list(views[0])
    logits = [
        sum(weights[k] * math.log(max(p[label], MIN_PROBABILITY)) for k, p in probabilities.items()) for label in labels
    ]
    top = max(logits)
    exp = [math.exp(v - top) for v in logits]
    return {label: e / sum(exp) for label, e in zip(labels, exp, strict=True)}


def fuse(probabilities: Mapping[str, Mapping[str, float]], fusion: Fusion) -> dict[str, float]:
    """p(y) ∝ Π_m p_m(y) ** w_m over the modalities given; one modality comes back unchanged."""
    return weighted_product(probabilities, fusion.modality_weights(list(probabilities)))


def fuse_views(modality: str, views: Mapping[str, Mapping[str, float]], fusion: Fusion) -> dict[str, float]:
    """One modality's distribution from its views (the adapter prompt, the words read off it)."""
    return weighted_product(views, fusion.view_weights(modality, list(views)))


def subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every combination of two or more of `modalities`: what a post can carry together."""
    return [c for size in range(2, len(modalities) + 1) for c in itertools.combinations(modalities, size)]


def fit_weights(items: Sequence[tuple[Mapping[str, Mapping[str, float]], str]]) -> dict[str, float]:
    """Weights minimising the negative log-likelihood of the gold label under the weighted product of each
    item's distributions ((key -> calibrated probabilities, gold label); every item has the same two or more
    keys); fitted as log-weights by L-BFGS, so they stay positive."""
    import torch

    keys = sorted(items[0][0]) if items else []
    if len(keys) < 2 or any(sorted(probabilities) != keys for probabilities, _ in items):
        raise ValueError(f"fit_weights takes items that all carry the same two or more modalities, got {keys}")
    labels = list(items[0][0][keys[0]])
    logs = torch.tensor(  # (items, keys, labels)
        [
            [[math.log(max(probabilities[k][y], MIN_PROBABILITY)) for y in labels] for k in keys]
            for probabilities, _ in items
        ],
        dtype=torch.float64,
    )
    target = torch.tensor([labels.index(label) for _, label in items])
    log_w = torch.zeros(len(keys), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_w], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy((logs * log_w.exp()[None, :, None]).sum(1), target)
        loss.backward()
        return loss

    optimiser.step(closure)
    return {k: round(float(w), 4) for k, w in zip(keys, log_w.exp().tolist(), strict=True)}


def fit_fusion(items: Sequence[tuple[Mapping[str, Mapping[str, Mapping[str, float]]], str]]) -> Fusion:
    """Both levels of weights from ((modality -> view -> calibrated probabilities), gold label) per post:
    each modality's view weights on the posts that read it more than one way (per set of views, on at least
    MIN_FIT_POSTS posts), then the weights of every combination of two or more modalities on the posts that
    carry them (each post counts in every combination of its modalities), each modality fused from its
    views with the weights just fitted."""
    groups: dict[str, dict[str, list]] = {}  # modality -> set of views -> (views, gold) of posts read that way
    for views, gold in items:
        for modality, read in views.items():
            if len(read) > 1:
                groups.setdefault(modality, {}).setdefault(combination(read), []).append((read, gold))
    within = {modality: {key: fit_weights(posts) for key, posts in sorted(sets.items()) if len(posts) >= MIN_FIT_POSTS}
              for modality, sets in sorted(groups.items())}  # fmt: skip
    fitted = Fusion(views=within)
    posts = [({m: fuse_views(m, read, fitted) for m, read in views.items()}, gold) for views, gold in items]
    weights = {}
    for together in subsets(sorted({m for views, _ in posts for m in views})):
        carrying = [({m: views[m] for m in together}, gold) for views, gold in posts if set(together) <= set(views)]
        if carrying:
            weights[combination(together)] = fit_weights(carrying)
    if not weights:
        raise ValueError("no item carries two or more modalities: nothing to fit the fusion weights on")
    return Fusion(weights, "fitted", views=within)


def fusion_path(profile: str) -> Path:
    from polyglm.platform.inventory import ADAPTER_ROOT

    return ADAPTER_ROOT / profile / FUSION_FILE


def load_fusion(
    profile: str,
    head_sha256: str | None,
    temperature: float,
    ngram_sha256: str | None,
    path: Path | None = None,
    syllables: str | None = None,
) -> Fusion:
    """The fitted weights when `fusion.json` was fitted after this head, calibration temperature, n-gram
    model and syllable view (head + model hashes; None: the profile has none); equal weights with the reason
    otherwise."""
    path = path or fusion_path(profile)
    refit = FUSION_COMMAND.format(profile=profile)
    if not path.is_file():
        return Fusion(status=f"equal weights: no fusion fitted for profile {profile!r}; fit one with `{refit}`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        weights = {str(c): {str(m): float(w) for m, w in together.items()} for c, together in record["weights"].items()}
        views = {str(m): {str(key): {str(v): float(w) for v, w in read.items()} for key, read in sets.items()}
                 for m, sets in record.get("views", {}).items()}  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Fusion(status=f"equal weights: {path} is unreadable ({exc}); refit with `{refit}`", source=str(path))
    fitted_for = (record.get("head"), record.get("temperature"), record.get("ngram"), record.get("syllables"))
    if fitted_for != (head_sha256, temperature, ngram_sha256, syllables):
        fitted = "head {:.12}, temperature {}, n-gram model {:.12}, syllables {:.12}".format(*map(str, fitted_for))
        now = (f"head {head_sha256!s:.12}, temperature {temperature}, n-gram model {ngram_sha256!s:.12}, "
               f"syllables {syllables!s:.12}")  # fmt: skip
        return Fusion(status=f"equal weights: {path} was fitted for {fitted}, not {now}; refit with `{refit}`",
                      source=str(path))  # fmt: skip
    tables = [*weights.values(), *(read for sets in views.values() for read in sets.values())]
    every = [w for table in tables for w in table.values()]
    if not all(0 <= w <= 100 for w in every):
        return Fusion(status=f"equal weights: {path} has a weight out of range ({weights}, views {views})",
                      source=str(path))  # fmt: skip
    return Fusion(weights, "fitted", str(path), views)
