"""Round-trip test for the EfficientNet-Lite0 converter, without the real weights.

A random timm model is renamed into the packaged file's lukemelas naming by an
inverse mapping written here independently of the converter, saved in the same
legacy (non-zip) torch pickle container, converted back, and compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from polyglm.platform.convert.efficientnet_lite import TIMM_NAME, convert_efficientnet_lite0

# Lite0 stage depths: timm "blocks.<stage>.<i>" <-> source flat "_blocks.<n>".
_STAGE_DEPTHS = [1, 2, 2, 3, 3, 4, 1]
_TOP = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1", "classifier": "_fc"}
_DS = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
_IR = {
    "conv_pw": "_expand_conv",
    "bn1": "_bn0",
    "conv_dw": "_depthwise_conv",
    "bn2": "_bn1",
    "conv_pwl": "_project_conv",
    "bn3": "_bn2",
}


def _to_source_name(key: str) -> str:
    """timm key -> packaged-file key (the inverse of the converter's mapping)."""
    parts = key.split(".")
    if parts[0] != "blocks":
        return f"{_TOP[parts[0]]}.{parts[1]}"
    stage, idx, module, param = int(parts[1]), int(parts[2]), parts[3], parts[4]
    flat = sum(_STAGE_DEPTHS[:stage]) + idx
    table = _DS if stage == 0 else _IR  # only the first (expand ratio 1) block is DS
    return f"_blocks.{flat}.{table[module]}.{param}"


def _random_source(path: Path) -> dict[str, torch.Tensor]:
    """Write a randomly initialised model in the source format; return timm's state."""
    torch.manual_seed(0)
    state = timm.create_model(TIMM_NAME, pretrained=False).state_dict()
    # Random BN stats too, so a mix-up between two BNs of one block would show.
    state = {k: torch.rand_like(v) if v.is_floating_point() else v for k, v in state.items()}
    source = {_to_source_name(k): v for k, v in state.items()}
    assert len(source) == len(state)  # inverse mapping is injective
    torch.save(source, path, _use_new_zipfile_serialization=False)
    return state


def test_round_trip_restores_every_tensor(tmp_path: Path) -> None:
    src = tmp_path / "efficientnet-lite0.pth"
    original = _random_source(src)
    config = convert_efficientnet_lite0(src, tmp_path / "out")

    converted = load_file(tmp_path / "out" / "model.safetensors")
    assert converted.keys() == original.keys()
    for key, tensor in original.items():
        assert torch.equal(converted[key], tensor), key
    assert config["architecture"] == TIMM_NAME
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == config


def test_missing_key_raises_naming_file(tmp_path: Path) -> None:
    src = tmp_path / "broken-lite0.pth"
    _random_source(src)
    source = torch.load(src, weights_only=True)
    del source["_blocks.7._bn1.running_var"]
    torch.save(source, src, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match=r"broken-lite0\.pth.*missing"):
        convert_efficientnet_lite0(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_unexpected_key_and_corrupt_file_raise(tmp_path: Path) -> None:
    src = tmp_path / "extra-lite0.pth"
    _random_source(src)
    source = torch.load(src, weights_only=True)
    source["_blocks.16._bn1.weight"] = torch.zeros(1)
    torch.save(source, src, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match=r"extra-lite0\.pth.*_blocks\.16\._bn1\.weight"):
        convert_efficientnet_lite0(src, tmp_path / "out")

    junk = tmp_path / "junk-lite0.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk-lite0\.pth"):
        convert_efficientnet_lite0(junk, tmp_path / "out")
