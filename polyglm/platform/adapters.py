"""Adapters (projectors) from encoder features to the language model's embedding space.

A projector is built from a spec string, as in LLaVA's `multimodal_projector/builder.py`:

- `linear`            one Linear(D_enc -> D_llm)
- `mlp2x_gelu`        Linear -> GELU -> Linear (N x for `mlpNx_gelu`)
- `pool4_mlp2x_gelu`  average-pool every 4 frames first (token-reducing, for 50 Hz Whisper frames)
- `resampler32`       32 learned queries cross-attend to the features (fixed-length output)

A checkpoint is `adapter.safetensors` + `manifest.json` naming the encoder and language model
(with weight hashes), dims, spec, training data hash, seed and metrics. Loading it against another
encoder or language model is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polyglm.platform.errors import PolyglmError

MANIFEST = "manifest.json"
WEIGHTS = "adapter.safetensors"


class AdapterError(PolyglmError):
    """An adapter spec or checkpoint is unusable here."""


def _mlp(d_in: int, d_out: int, depth: int) -> nn.Sequential:
    layers: list[Any] = [nn.Linear(d_in, d_out)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(d_out, d_out)]
    return nn.Sequential(*layers)


def _build_linear(match: re.Match, d_in: int, d_out: int):
    return nn.Linear(d_in, d_out)


def _build_mlp(match: re.Match, d_in: int, d_out: int):
    return _mlp(d_in, d_out, int(match["depth"]))


def _build_pooled_mlp(match: re.Match, d_in: int, d_out: int):
    return PooledProjector(int(match["stride"]), _mlp(d_in, d_out, int(match["depth"])))


def _build_resampler(match: re.Match, d_in: int, d_out: int):
    return Resampler(int(match["queries"]), d_in, d_out)


# Registry: a spec matches exactly one pattern (fullmatch), so there is no prefix dispatch.
PROJECTORS: dict[str, Callable[[re.Match, int, int], Any]] = {
    r"linear": _build_linear,
    r"mlp(?P<depth>[1-9])x_gelu": _build_mlp,
    r"pool(?P<stride>[1-9][0-9]?)_mlp(?P<depth>[1-9])x_gelu": _build_pooled_mlp,
    r"resampler(?P<queries>[1-9][0-9]{0,2})": _build_resampler,
}


def build_projector(spec: str, d_in: int, d_out: int) -> nn.Module:
    """A torch module mapping (B, T, d_in) -> (B, T', d_out) for `spec`."""
    for pattern, build in PROJECTORS.items():
        if match := re.fullmatch(pattern, spec):
            return build(match, d_in, d_out)
    raise AdapterError(f"unknown projector spec {spec!r}; use linear, mlp2x_gelu, pool4_mlp2x_gelu or resampler32")


def output_length(projector: nn.Module, input_tokens: int) -> int:
    """Feature slots (placeholder tokens) the projector produces for `input_tokens` encoder frames."""
    length = getattr(projector, "output_length", None)
    return length(input_tokens) if length else input_tokens


class PooledProjector(nn.Module):
    """Average-pool `stride` consecutive frames, then project: cuts Whisper's 50 Hz frames to 50/stride."""

    def __init__(self, stride: int, mlp) -> None:
        super().__init__()
        self.stride = stride
        self.mlp = mlp

    def output_length(self, input_tokens: int) -> int:
        return -(-input_tokens // self.stride)

    def forward(self, features):
        batch, frames, dim = features.shape
        pad = (-frames) % self.stride
        if pad:  # repeat the last frame so a short tail still forms a full window
            features = torch.cat([features, features[:, -1:].expand(batch, pad, dim)], dim=1)
        pooled = features.reshape(batch, -1, self.stride, dim).mean(dim=2)
        return self.mlp(pooled)


class Resampler(nn.Module):
    """A small query-based resampler (Perceiver/Q-Former style): fixed output length for any input."""

    def __init__(self, queries: int, d_in: int, d_out: int, heads: int = 8) -> None:
        super().__init__()
        heads = heads if d_out % heads == 0 else 1
        self.queries = nn.Parameter(torch.randn(queries, d_out) * 0.02)
        self.input_proj = nn.Linear(d_in, d_out)
        self.attention = nn.MultiheadAttention(d_out, heads, batch_first=True)
        self.norm = nn.LayerNorm(d_out)
        self.mlp = _mlp(d_out, d_out, 2)

    def forward(self, features):
        keys = self.input_proj(features)
        queries = self.queries.unsqueeze(0).expand(features.shape[0], -1, -1)
        attended, _ = self.attention(queries, keys, keys, need_weights=False)
        return self.mlp(self.norm(attended + queries))

    def output_length(self, input_tokens: int) -> int:
        return self.queries.shape[0]


@dataclass(frozen=True)
class AdapterManifest:
    """Everything needed to refuse a wrong pairing and to reproduce the adapter."""

    modality: str  # image or audio
    spec: str  # projector spec string
    encoder_id: str  # encoder name as loaded
    encoder_hash: str  # sha256 prefix of the encoder weights
    lm_id: str  # language model name as loaded
    lm_hash: str  # sha256 prefix of the language model weights
    d_in: int  # encoder feature dim
    d_out: int  # language model hidden size
    data: dict = field(default_factory=dict)  # training data description and its hash
    seed: int = 0
    metrics: dict = field(default_factory=dict)  # held-out losses, accuracies, WER
    command: str = ""  # the command that reproduces this adapter


def save_adapter(projector, manifest: AdapterManifest, out_dir: Path) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in projector.state_dict().items()}
    save_file(state, out_dir / WEIGHTS)
    (out_dir / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2, ensure_ascii=False) + "\n")


def read_manifest(adapter_dir: Path) -> AdapterManifest:
    path = adapter_dir / MANIFEST
    if not path.is_file():
        raise AdapterError(f"adapter folder {adapter_dir} has no {MANIFEST}; retrain it with `polyglm train-adapter`")
    try:
        return AdapterManifest(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise AdapterError(f"{path} is not a valid adapter manifest ({exc}); retrain the adapter") from None


def check_pairing(manifest: AdapterManifest, encoder_id: str, encoder_hash: str, lm_id: str, lm_hash: str) -> None:
    """Refuse an adapter trained for another encoder or language model: its outputs would be noise."""
    if (manifest.encoder_id, manifest.encoder_hash) != (encoder_id, encoder_hash):
        raise AdapterError(
            f"{manifest.modality} adapter was trained for encoder {manifest.encoder_id} "
            f"(weights {manifest.encoder_hash}), not {encoder_id} (weights {encoder_hash}); "
            f"use the profile it was trained for or retrain with `polyglm train-adapter`"
        )
    if (manifest.lm_id, manifest.lm_hash) != (lm_id, lm_hash):
        raise AdapterError(
            f"{manifest.modality} adapter was trained for language model {manifest.lm_id} "
            f"(weights {manifest.lm_hash}), not {lm_id} (weights {lm_hash}); "
            f"use the profile it was trained for or retrain with `polyglm train-adapter`"
        )


def load_adapter(adapter_dir: Path, encoder_id: str, encoder_hash: str, lm_id: str, lm_hash: str):
    """(projector in eval mode, manifest), after checking the pairing."""
    from safetensors.torch import load_file

    manifest = read_manifest(adapter_dir)
    check_pairing(manifest, encoder_id, encoder_hash, lm_id, lm_hash)
    projector = build_projector(manifest.spec, manifest.d_in, manifest.d_out)
    projector.load_state_dict(load_file(adapter_dir / WEIGHTS), strict=True)
    return projector.eval(), manifest
