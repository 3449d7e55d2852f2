"""`PackRetriever`: a scenario pack's knowledge base (hybrid BM25 + dense, `scenarios/retrieval.py`) as a
LangChain retriever. Each Document is one passage; its metadata carry the citation the pack's prompts
ask for (`doc_id#passage`) and the scores."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.prompts import PromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field, PrivateAttr

from polyglm.integrations.langchain._platform import platform_of
from polyglm.platform.config import DEFAULT_PROFILE
from polyglm.platform.errors import InputError

CITED_PASSAGE = PromptTemplate.from_template("[{citation}] {title}\n{page_content}")  # how as_tool shows a hit


class PackRetriever(BaseRetriever):
    """The passages of `pack`'s knowledge base that best match a query.

    ```python
    docs = PackRetriever(pack="customer_service", lang="en", k=2).invoke("How long do refunds take?")
    docs[0].metadata["citation"]  # 'refund-timeline-en#0'
    ```
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    pack: str  # scenario pack name (polyglm scenarios list)
    lang: str | None = None  # only passages in this language; None: every language
    k: int | None = None  # passages per query; None: the pack's knowledge_base.top_k
    profile: str = DEFAULT_PROFILE  # whose embedder ranks the passages
    device: str | None = None  # torch device for the embedder; None: cuda when available, else cpu
    platform: Any = Field(default=None, exclude=True, repr=False)  # a loaded Platform to share; None: load lazily

    _index: Any = PrivateAttr(default=None)  # polyglm.scenarios.retrieval.Retriever, built on first use

    def get_platform(self) -> Any:
        return platform_of(self)

    def index(self) -> Any:
        """The pack's retriever (passage embeddings come from the disk cache when the kb is unchanged)."""
        if self._index is None:
            from polyglm.scenarios.loader import load_pack
            from polyglm.scenarios.retrieval import build_retriever

            pack = load_pack(self.pack)
            if self.lang is not None and self.lang not in pack.languages:
                raise InputError(f"pack {self.pack!r} has {', '.join(pack.languages)} passages, not {self.lang!r}")
            self._index = build_retriever(pack, self.get_platform().embedder)
        return self._index

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None, lang: str | None = None
    ) -> list[Document]:
        count = k or self.k
        if count is not None and count < 1:
            raise InputError(f"k must be at least 1, got {count}")
        hits = self.index().search(query, k=count, lang=lang or self.lang)
        return [
            Document(
                id=hit.citation,
                page_content=hit.text,
                metadata={
                    "citation": hit.citation,
                    "doc_id": hit.doc_id,
                    "title": hit.title,
                    "passage": hit.passage,
                    "lang": hit.lang,
                    "pack": self.pack,
                    "score": round(hit.score, 4),
                    "bm25": round(hit.bm25, 4),
                    "dense": round(hit.dense, 4),
                },
            )
            for hit in hits
        ]

    def as_tool(self, name: str | None = None, description: str | None = None) -> BaseTool:
        """This retriever as a tool an agent calls: passages shown as `[citation] title` + text, the
        Documents kept as the ToolMessage's artifact."""
        from langchain_core.tools import create_retriever_tool

        return create_retriever_tool(
            self,
            name or f"search_{self.pack}_kb",
            description or f"Search the {self.pack.replace('_', ' ')} knowledge base; returns cited passages.",
            document_prompt=CITED_PASSAGE,
            response_format="content_and_artifact",
        )
