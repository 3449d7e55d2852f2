"""Vision encoders through timm: any timm architecture with local weights (ViT family, EfficientNet).

A weights folder holds `config.json` in timm's hub layout (architecture, num_classes, pretrained_cfg
with input size / mean / std, optional model_args and label_names) and `model.safetensors`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyglm.encoders import register


@register("timm")
@dataclass
class TimmVisionEncoder:
    modality = "image"
    model: Any  # timm model in eval mode
    transform: Any  # PIL image -> normalised tensor, from the weights' pretrained_cfg
    labels: list[str]  # class names for classify(); empty when the head is unknown
    device: Any
    dtype: Any
    name: str  # architecture name shown to users

    @classmethod
    def load(cls, path: Path, options: dict, device, dtype) -> TimmVisionEncoder:
        import timm
        from timm.data import create_transform, resolve_data_config

        config = json.loads((path / "config.json").read_text())
        architecture = str(options.get("architecture", config["architecture"]))
        model = timm.create_model(
            architecture,
            pretrained=False,
            num_classes=config.get("num_classes", 1000),
            **config.get("model_args", {}),
        )
        model.load_state_dict(_read_weights(path), strict=True)
        model.to(device=device, dtype=dtype).eval()
        data_config = resolve_data_config(config.get("pretrained_cfg", {}), model=model)
        return cls(
            model=model,
            transform=create_transform(**data_config, is_training=False),
            labels=_labels(config),
            device=device,
            dtype=dtype,
            name=architecture,
        )

    def preprocess(self, images: Sequence[Any]):
        import torch

        pixels = [self.transform(image.convert("RGB")) for image in images]
        return torch.stack(pixels).to(device=self.device, dtype=self.dtype)

    def encode(self, images: Sequence[Any]):
        """(B, T, D) patch/feature tokens before pooling: what an adapter projects."""
        import torch

        with torch.inference_mode():
            features = self.model.forward_features(self.preprocess(images))
        if features.ndim == 4:  # CNNs give (B, C, H, W): one token per spatial cell
            features = features.flatten(2).transpose(1, 2)
        return features

    def classify(self, images: Sequence[Any], top_k: int = 5) -> list[list[tuple[str, float]]]:
        import torch

        with torch.inference_mode():
            probs = self.model(self.preprocess(images)).float().softmax(-1)
        values, indices = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        return [
            [(self._label(int(i)), float(v)) for v, i in zip(row_v, row_i, strict=True)]
            for row_v, row_i in zip(values, indices, strict=True)
        ]

    def _label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else f"class {index}"


def _read_weights(path: Path) -> dict:
    from safetensors.torch import load_file

    file = path / "model.safetensors"
    if file.is_file():
        return load_file(file)
    import torch

    return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)


def _labels(config: dict) -> list[str]:
    if config.get("label_names"):
        return list(config["label_names"])
    if config.get("num_classes", 1000) == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(1000)]
    return []
