"""Sentence embeddings: a transformers encoder, mean-pooled over tokens and L2-normalised."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class MeanPooledEmbedder:
    model: Any
    tokenizer: Any
    device: Any
    dtype: Any
    name: str
    query_prefix: str = ""  # e5-style models want "query: " / "passage: "
    passage_prefix: str = ""

    @classmethod
    def load(cls, path: Path, options: dict, device, dtype) -> MeanPooledEmbedder:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, dtype=dtype, local_files_only=True).to(device).eval()
        return cls(
            model=model,
            tokenizer=tokenizer,
            device=device,
            dtype=dtype,
            name=path.name,
            query_prefix=str(options.get("query_prefix", "")),
            passage_prefix=str(options.get("passage_prefix", "")),
        )

    def embed(self, texts: Sequence[str], query: bool = False, max_length: int = 256):
        """(N, D) float32 unit vectors; cosine similarity is a dot product."""
        import torch

        prefix = self.query_prefix if query else self.passage_prefix
        batch = self.tokenizer(
            [prefix + t for t in texts], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1).cpu()
