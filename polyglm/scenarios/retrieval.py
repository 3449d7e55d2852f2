"""Knowledge-base retrieval for scenario packs: chunking, Okapi BM25 + dense cosine, a disk cache.

Documents are cut into passages (paragraphs packed up to `chunk_chars`; a longer paragraph is cut
into windows that overlap by `chunk_overlap`). A query is scored two ways: BM25 over tokens (jieba
for text with CJK characters, a lowercase word regex otherwise) and cosine similarity of embedder
vectors. The hybrid score is `w * bm25_minmax + (1 - w) * cosine`, with `w = bm25_weight`: BM25
finds exact terms (order ids, product names, Chinese with an English-only embedder), the embedder
finds paraphrases. Passage embeddings are the expensive part, so they are cached on disk, keyed by
the kb files' contents, the chunk settings and the embedder's name.

Retrieved text is data, never instructions: `quote_passages` fences it and says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from polyglm.platform.config import Settings
from polyglm.scenarios.loader import load_documents, read_jsonl
from polyglm.scenarios.schema import LANGUAGES, KbDocument, ScenarioPack

INDEX_FORMAT = 1  # bump when what the cache stores changes; old entries are then rebuilt
EMBED_BATCH = 32
K1 = 1.5
B = 0.75
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_WORD = re.compile(r"[a-z0-9]+")
_HAS_WORD_CHAR = re.compile(r"\w")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_FENCE = re.compile(r"<{3,}|>{3,}")  # the quote delimiters are built from these runs
_FENCE_SAFE = {"<": "‹‹", ">": "››"}  # what a run inside a passage becomes: looks alike, never closes a block


class Embedder(Protocol):
    """What retrieval needs from `platform.embedder` (polyglm.platform.embedding.MeanPooledEmbedder)."""

    name: str

    def embed(self, texts: Sequence[str], query: bool = False): ...  # (N, D) torch unit vectors


@dataclass(frozen=True)
class Passage:
    """A piece of one document; `passage` is its 0-based position, so doc_id#passage cites it."""

    doc_id: str  # the document's front-matter id
    title: str  # the document's title
    lang: str  # the document's language
    passage: int  # index of this passage within the document
    text: str  # the passage itself

    @property
    def indexed_text(self) -> str:
        """What BM25 and the embedder see: the title gives a short passage its topic."""
        return f"{self.title}\n{self.text}"


@dataclass(frozen=True)
class Hit:
    """One ranked passage with its scores; enough to quote and cite it."""

    doc_id: str  # cite as [doc_id] or doc_id#passage
    title: str  # document title
    lang: str  # document language
    passage: int  # passage index within the document
    text: str  # the passage text
    score: float  # hybrid score used for ranking
    bm25: float  # raw Okapi BM25 score
    dense: float  # cosine similarity of query and passage embeddings

    @property
    def citation(self) -> str:
        return f"{self.doc_id}#{self.passage}"


# ---------------------------------------------------------------- chunking


def chunk_text(text: str, chunk_chars: int, overlap: int) -> list[str]:
    """Paragraphs packed greedily up to `chunk_chars`; a longer paragraph becomes overlapping windows."""
    pieces = [piece for paragraph in split_paragraphs(text) for piece in _windows(paragraph, chunk_chars, overlap)]
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 2 + len(piece) <= chunk_chars:
            chunks[-1] = f"{chunks[-1]}\n\n{piece}"
        else:
            chunks.append(piece)
    return chunks


def split_paragraphs(text: str) -> list[str]:
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def _windows(paragraph: str, size: int, overlap: int) -> list[str]:
    if len(paragraph) <= size:
        return [paragraph]
    step = size - overlap
    windows = []
    for start in range(0, len(paragraph), step):
        windows.append(paragraph[start : start + size])
        if start + size >= len(paragraph):
            break
    return windows


def chunk_document(doc: KbDocument, chunk_chars: int, overlap: int) -> list[Passage]:
    return [
        Passage(doc_id=doc.doc_id, title=doc.title, lang=doc.lang, passage=index, text=text)
        for index, text in enumerate(chunk_text(doc.body, chunk_chars, overlap))
    ]


# ---------------------------------------------------------------- tokens and BM25


def tokenize(text: str) -> list[str]:
    """jieba search-mode words for text with CJK characters; lowercase [a-z0-9]+ words otherwise."""
    lowered = text.lower()
    if not _CJK.search(lowered):
        return _WORD.findall(lowered)
    return [token for token in (t.strip() for t in _jieba().lcut_for_search(lowered)) if _HAS_WORD_CHAR.search(token)]


@cache
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it logs its dictionary loading at INFO on first use
    return jieba


class BM25:
    """Okapi BM25 with the non-negative idf: idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)).

    score(d, q) = sum over query tokens t (repeats count) of
                  idf(t) * f(t, d) * (k1 + 1) / (f(t, d) + k1 * (1 - b + b * |d| / avgdl))
    """

    def __init__(self, documents: Sequence[Sequence[str]], k1: float = K1, b: float = B) -> None:
        self.k1, self.b = k1, b
        self.lengths = [len(doc) for doc in documents]
        self.avgdl = (sum(self.lengths) / len(documents)) if documents else 0.0
        self.postings: dict[str, dict[int, int]] = defaultdict(dict)  # term -> {doc index: count}
        for index, doc in enumerate(documents):
            for term, count in Counter(doc).items():
                self.postings[term][index] = count
        n = len(documents)
        self.idf = {
            term: math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5)) for term, docs in self.postings.items()
        }

    def scores(self, query: Sequence[str]) -> list[float]:
        totals = [0.0] * len(self.lengths)
        for term in query:
            for index, count in self.postings.get(term, {}).items():
                norm = self.k1 * (1 - self.b + self.b * self.lengths[index] / self.avgdl)
                totals[index] += self.idf[term] * count * (self.k1 + 1) / (count + norm)
        return totals


def min_max(values: Sequence[float]) -> list[float]:
    """Scale to 0..1; all-equal values carry no ranking signal and become 0."""
    low, high = min(values, default=0.0), max(values, default=0.0)
    if high <= low:
        return [0.0] * len(values)
    return [(v - low) / (high - low) for v in values]


# ---------------------------------------------------------------- the retriever


@dataclass
class Retriever:
    """A pack's passages with their BM25 statistics and embeddings. Build with `build_retriever`."""

    pack_name: str
    passages: list[Passage]
    embeddings: Any  # torch.Tensor (N, D), unit rows
    embedder: Embedder
    bm25_weight: float  # hybrid mix, from the pack's knowledge_base section
    top_k: int  # default number of hits
    key: str  # cache key: contents + chunk settings + embedder
    from_cache: bool  # True when the embeddings were read from disk rather than computed
    bm25: BM25 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.bm25 = BM25([tokenize(p.indexed_text) for p in self.passages])

    def search(self, query: str, k: int | None = None, lang: str | None = None) -> list[Hit]:
        """The best `k` passages (default: the pack's top_k), optionally only those in `lang`."""
        return self.rank(query, lang)[: k or self.top_k]

    def rank(self, query: str, lang: str | None = None) -> list[Hit]:
        """Every passage (in `lang`, if given), best first."""
        chosen = [i for i, p in enumerate(self.passages) if lang is None or p.lang == lang]
        if not chosen or not query.strip():
            return []
        bm25_all = self.bm25.scores(tokenize(query))
        bm25 = [bm25_all[i] for i in chosen]
        query_vector = self.embedder.embed([query], query=True)[0].float()
        dense = (self.embeddings[chosen] @ query_vector).tolist()
        w = self.bm25_weight
        hits = [
            _hit(self.passages[i], w * norm + (1 - w) * cosine, raw, cosine)
            for i, norm, raw, cosine in zip(chosen, min_max(bm25), bm25, dense, strict=True)
        ]
        return sorted(hits, key=lambda h: (-h.score, h.doc_id, h.passage))


def _hit(passage: Passage, score: float, bm25: float, dense: float) -> Hit:
    return Hit(**asdict(passage), score=score, bm25=bm25, dense=dense)


def build_retriever(pack: ScenarioPack, embedder: Embedder, cache_root: Path | None = None) -> Retriever:
    """The pack's retriever; embeddings come from the disk cache when kb files and settings are unchanged."""
    kb = pack.knowledge_base
    documents = load_documents(pack)
    key = index_key(documents, kb.chunk_chars, kb.chunk_overlap, embedder_name(embedder))
    folder = (cache_root or Settings.from_env().cache_dir / "kb_index") / pack.name
    cached = _read_index(folder, key)
    if cached is not None:
        passages, embeddings = cached
    else:
        passages = [p for doc in documents for p in chunk_document(doc, kb.chunk_chars, kb.chunk_overlap)]
        embeddings = embed_passages(embedder, passages)
        _write_index(folder, key, passages, embeddings)
    return Retriever(
        pack_name=pack.name,
        passages=passages,
        embeddings=embeddings,
        embedder=embedder,
        bm25_weight=kb.bm25_weight,
        top_k=kb.top_k,
        key=key,
        from_cache=cached is not None,
    )


def embedder_name(embedder: Embedder) -> str:
    return str(getattr(embedder, "name", type(embedder).__name__))


def index_key(documents: Sequence[KbDocument], chunk_chars: int, overlap: int, embedder: str) -> str:
    """Changes whenever any kb file's name or bytes, the chunk settings or the embedder change."""
    files = [[doc.path.name, hashlib.sha256(doc.path.read_bytes()).hexdigest()] for doc in documents]
    recipe = {
        "format": INDEX_FORMAT,
        "chunk_chars": chunk_chars,
        "overlap": overlap,
        "embedder": embedder,
        "files": files,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:20]


def embed_passages(embedder: Embedder, passages: Sequence[Passage]):
    import torch

    texts = [p.indexed_text for p in passages]
    batches = [embedder.embed(texts[i : i + EMBED_BATCH], query=False) for i in range(0, len(texts), EMBED_BATCH)]
    return torch.cat(batches).float() if batches else torch.zeros(0, 0)


def _read_index(folder: Path, key: str) -> tuple[list[Passage], Any] | None:
    """The cached passages and embeddings, or None when absent or unreadable (then it is rebuilt)."""
    meta, tensors = folder / f"{key}.json", folder / f"{key}.safetensors"
    if not (meta.is_file() and tensors.is_file()):
        return None
    try:
        from safetensors.torch import load_file

        passages = [Passage(**row) for row in json.loads(meta.read_text(encoding="utf-8"))["passages"]]
        embeddings = load_file(tensors)["embeddings"]
    except Exception:  # any unreadable entry (truncated file, old layout, safetensors error) is simply rebuilt
        return None
    return (passages, embeddings) if embeddings.shape[0] == len(passages) else None


def _write_index(folder: Path, key: str, passages: Sequence[Passage], embeddings) -> None:
    """Write both files atomically, then drop entries for older keys. A read-only cache is not fatal."""
    from safetensors.torch import save_file

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _atomic(folder / f"{key}.safetensors") as tmp:
            save_file({"embeddings": embeddings.contiguous()}, str(tmp))
        with _atomic(folder / f"{key}.json") as tmp:
            tmp.write_text(
                json.dumps({"passages": [asdict(p) for p in passages]}, ensure_ascii=False), encoding="utf-8"
            )
    except OSError as exc:
        logging.getLogger(__name__).warning("kb index not cached in %s: %s", folder, exc)
        return
    for stale in folder.iterdir():
        if stale.suffix in (".json", ".safetensors") and stale.stem != key:
            stale.unlink(missing_ok=True)


class _atomic:
    """Yield a temporary path beside `target`; rename it into place only if the block succeeds."""

    def __init__(self, target: Path) -> None:
        self.target = target
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        os.close(fd)
        self.tmp = Path(name)

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            os.replace(self.tmp, self.target)
        else:
            self.tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- evaluation


def evaluate_retrieval(pack: ScenarioPack, retriever: Retriever, k: int = 4, *, same_language: bool = True) -> dict:
    """hit@1, hit@k and MRR over eval items with `relevant_docs`, overall and per language.

    The rank of an item is the position of the first passage from any relevant document. With
    `same_language` the search is limited to the item's language, as a chat in that language would be.
    """
    ranks: dict[str, list[int | None]] = defaultdict(list)
    for item in read_jsonl(pack, pack.eval_set):
        if item.get("relevant_docs"):
            hits = retriever.rank(item["input"], lang=item["lang"] if same_language else None)
            ranks[item["lang"]].append(_first_relevant(hits, set(item["relevant_docs"])))
    every = [rank for lang_ranks in ranks.values() for rank in lang_ranks]
    return {
        "k": k,
        **_rank_metrics(every, k),
        "by_lang": {lang: _rank_metrics(lang_ranks, k) for lang, lang_ranks in sorted(ranks.items())},
    }


def _first_relevant(hits: Sequence[Hit], relevant: set[str]) -> int | None:
    return next((position for position, hit in enumerate(hits, start=1) if hit.doc_id in relevant), None)


def _rank_metrics(ranks: Sequence[int | None], k: int) -> dict[str, float | int]:
    n = len(ranks) or 1
    return {
        "items": len(ranks),
        "hit@1": sum(r == 1 for r in ranks) / n,
        f"hit@{k}": sum(r is not None and r <= k for r in ranks) / n,
        "mrr": sum(1 / r for r in ranks if r) / n,
    }


# ---------------------------------------------------------------- quoting retrieved text for a prompt


def quote_passages(hits: Sequence[Hit], lang: str = "en") -> str:
    """Fence each hit as reference data, headed by a notice that instructions inside must be ignored.

    A `<<<` or `>>>` run inside a passage (or title) is rewritten, so a passage cannot close its own
    block and pose as the system or the user.
    """
    blocks = [LANGUAGES[lang].reference_notice]
    for number, hit in enumerate(hits, start=1):
        header = f"<<<REFERENCE {number} source={hit.citation} title={neutralise_fences(hit.title)}>>>"
        blocks.append(f"{header}\n{neutralise_fences(hit.text)}\n<<<END REFERENCE {number}>>>")
    return "\n\n".join(blocks)


def neutralise_fences(text: str) -> str:
    return _FENCE.sub(lambda m: _FENCE_SAFE[m.group(0)[0]], text)


def citations(hits: Sequence[Hit]) -> Mapping[str, str]:
    """citation -> title, in rank order: what a UI shows under an answer."""
    return {hit.citation: hit.title for hit in hits}
