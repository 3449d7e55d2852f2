"""Which passage sentences the grounding fallback and the evidence after an answer quote, measured on the packs'
kb_dialogues questions (fine-tune data, never eval items): of the specifics in each question's reference
answer (numbers with units, places, pack terms) that the retrieved passages show, the share the quoted
sentences hold, per language, for plain BM25 and for each ranking choice of `grounding.best_sentences`
added one at a time (the last row is what ships).

Run: .venv/bin/python bench/quote_choice.py --profile offline
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from unittest import mock

import yaml

from polyglm.platform.loader import load_platform
from polyglm.scenarios import grounding
from polyglm.scenarios.loader import list_packs, load_pack
from polyglm.scenarios.retrieval import B, build_retriever

# Each row adds one choice to the one above; the values patched are grounding's module constants.
RANKINGS = {
    "plain BM25": {"SENTENCE_B": B, "PASSAGE_DISCOUNT": 0.0, "QUANTITY_BONUS": 0.0},
    "+ no length penalty": {"SENTENCE_B": 0.0, "PASSAGE_DISCOUNT": 0.0, "QUANTITY_BONUS": 0.0},
    "+ passage rank discount": {"SENTENCE_B": 0.0, "QUANTITY_BONUS": 0.0},
    "+ quantity bonus (shipped)": {},
}


def questions(pack_root: Path) -> list[tuple[str, str, str]]:
    """(language, question, reference answer) from a pack's kb_dialogues.yaml (either spelling of its keys)."""
    path = pack_root / "data" / "kb_dialogues.yaml"
    if not path.is_file():
        return []
    found = []
    for entry in yaml.safe_load(path.read_text(encoding="utf-8")):
        asked, answers = entry.get("questions", entry.get("q")), entry.get("answer", entry.get("a"))
        found += [(lang, q, answers[lang]) for lang, qs in asked.items() for q in qs]
    return found


def held_share(cases: list, k: int) -> dict[str, float]:
    """Per language: specifics quoted / specifics shown, over every case."""
    held, shown = {}, {}
    for lang, question, passages, specifics, terms in cases:
        quoted = " ".join(s for s, _ in grounding.best_sentences(question, passages, k))
        held[lang] = held.get(lang, 0) + sum(not grounding.unsupported(c, [quoted], terms) for c in specifics)
        shown[lang] = shown.get(lang, 0) + len(specifics)
    return {lang: held[lang] / shown[lang] for lang in sorted(shown) if shown[lang]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="offline")
    args = parser.parse_args()
    embedder = load_platform(args.profile).embedder
    cases = []
    for name in list_packs():
        pack = load_pack(name)
        retriever, terms = build_retriever(pack, embedder), grounding.pack_terms(pack.root)
        for lang, question, reference in questions(pack.root):
            passages = [(hit.text, hit.citation) for hit in retriever.search(question, lang=lang)]
            texts = [text for text, _ in passages]
            specifics = [c.text for c in grounding.claims(reference, terms)
                         if not grounding.unsupported(c.text, texts, terms)]  # fmt: skip
            cases.append((lang, question, passages, specifics, terms))
    print(f"{len(cases)} kb_dialogues questions; share of the reference's shown specifics that the quotes hold")
    ks = (grounding.EVIDENCE_SENTENCES, grounding.QUOTED_SENTENCES)
    print(f"{'ranking':28s} " + "  ".join(f"k={k} zh / en " for k in ks))
    for label, patch in RANKINGS.items():
        with mock.patch.multiple(grounding, **patch) if patch else contextlib.nullcontext():
            shares = [held_share(cases, k) for k in ks]
        print(f"{label:28s} " + "  ".join(f"{s.get('zh', 0):.3f} / {s.get('en', 0):.3f}" for s in shares))


if __name__ == "__main__":
    main()
