"""Text inside images through RapidOCR (PP-OCR ONNX models shipped in its package; zh + en)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RapidOcr:
    engine: Any
    name: str = "rapidocr (PP-OCR)"

    @classmethod
    def load(cls, path: Path, options: dict, device, dtype) -> RapidOcr:
        from rapidocr_onnxruntime import RapidOCR

        return cls(engine=RapidOCR())

    def read(self, image: Any) -> list[tuple[str, float]]:
        """Lines of text found in a PIL image with their confidence, top to bottom."""
        import numpy as np

        result, _ = self.engine(np.asarray(image.convert("RGB")))
        return [(text, float(score)) for _box, text, score in result or []]
