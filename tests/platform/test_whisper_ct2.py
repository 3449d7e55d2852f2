"""Round-trip test for the CTranslate2 -> openai-whisper converter, without real weights.

A tiny random openai-whisper model is written as a CTranslate2 ``model.bin`` by a
writer and an inverse name mapping kept here, independent of the converter (fused
q/k/v and k/v with a zero key bias, int8 + ``_scale`` weights, the tied output
projection as an alias), converted back, and compared weight by weight.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import whisper
import whisper.model

from polyglm.platform.convert.whisper_ct2 import ct2_to_whisper_checkpoint, read_ct2_model

DIMS = {
    "n_mels": 8,
    "n_audio_ctx": 16,
    "n_audio_state": 64,
    "n_audio_head": 4,
    "n_audio_layer": 2,
    "n_vocab": 100,
    "n_text_ctx": 12,
    "n_text_state": 64,
    "n_text_head": 4,
    "n_text_layer": 2,
}
ALIGNMENT_HEADS = [[1, 0], [1, 3]]
_TYPE_ID = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}
# Stored as int8 + per-row power-of-two scale, so dequantization is exact and comparable.
_INT8_KEYS = ("decoder.token_embedding.weight", "decoder.blocks.1.mlp.0.weight", "encoder.conv2.weight")


def _write_string(f, text: str) -> None:
    raw = text.encode("utf-8")
    f.write(struct.pack("<H", len(raw) + 1) + raw + b"\0")


def write_ct2_bin(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str], spec: str = "WhisperSpec"):
    """Minimal CTranslate2 binary-version-6 writer (mirrors ModelSpec._serialize)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<I", 6))
        _write_string(f, spec)
        f.write(struct.pack("<II", 3, len(variables)))
        for name, value in sorted(variables.items()):
            _write_string(f, name)
            f.write(struct.pack("<B", value.ndim) + b"".join(struct.pack("<I", d) for d in value.shape))
            data = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes()
            f.write(struct.pack("<BI", _TYPE_ID[value.dtype.name], len(data)) + data)
        f.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            _write_string(f, alias)
            _write_string(f, target)


def _random_whisper(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A tiny Whisper's state dict with float16-exact random values, plus the int8 form of _INT8_KEYS.

    The int8 weights use power-of-two row scales, so q / scale is exact in float16 too
    and the round trip can be checked with exact equality.
    """
    gen = torch.Generator().manual_seed(seed)
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**DIMS))
    state = {
        k: (torch.randn(v.shape, generator=gen) * 0.1).half().float().numpy() for k, v in model.state_dict().items()
    }
    rng = np.random.default_rng(seed)
    quantized: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for key in _INT8_KEYS:
        q = rng.integers(-127, 128, size=state[key].shape).astype(np.int8)
        scale = (2.0 ** rng.integers(6, 10, size=q.shape[0])).astype(np.float32)
        state[key] = q.astype(np.float32) / scale.reshape((-1,) + (1,) * (q.ndim - 1))
        quantized[key] = (q, scale)
    return state, quantized


def _to_ct2(state: dict[str, np.ndarray], quantized: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """openai-whisper state dict -> CTranslate2 WhisperSpec variables (inverse mapping)."""
    out: dict[str, np.ndarray] = {}

    def lin(ct2: str, ow: str, bias: bool = True) -> None:
        if f"{ow}.weight" in quantized:  # CTranslate2 int8: q = rint(w * scale), scale per row
            out[f"{ct2}/weight"], out[f"{ct2}/weight_scale"] = quantized[f"{ow}.weight"]
        else:
            out[f"{ct2}/weight"] = state[f"{ow}.weight"].astype(np.float16)
        if bias:
            out[f"{ct2}/bias"] = state[f"{ow}.bias"].astype(np.float16)

    def ln(ct2: str, ow: str) -> None:
        out[f"{ct2}/gamma"] = state[f"{ow}.weight"].astype(np.float16)
        out[f"{ct2}/beta"] = state[f"{ow}.bias"].astype(np.float16)

    def fused(ct2: str, ow: str, parts: list[str]) -> None:
        out[f"{ct2}/weight"] = np.concatenate([state[f"{ow}.{p}.weight"] for p in parts]).astype(np.float16)
        zero = np.zeros(state[f"{ow}.value.bias"].shape, np.float32)  # the key has no bias
        out[f"{ct2}/bias"] = np.concatenate([state.get(f"{ow}.{p}.bias", zero) for p in parts]).astype(np.float16)

    def block(ct2: str, ow: str, cross: bool) -> None:
        ln(f"{ct2}/self_attention/layer_norm", f"{ow}.attn_ln")
        fused(f"{ct2}/self_attention/linear_0", f"{ow}.attn", ["query", "key", "value"])
        lin(f"{ct2}/self_attention/linear_1", f"{ow}.attn.out")
        if cross:
            ln(f"{ct2}/attention/layer_norm", f"{ow}.cross_attn_ln")
            lin(f"{ct2}/attention/linear_0", f"{ow}.cross_attn.query")
            fused(f"{ct2}/attention/linear_1", f"{ow}.cross_attn", ["key", "value"])
            lin(f"{ct2}/attention/linear_2", f"{ow}.cross_attn.out")
        ln(f"{ct2}/ffn/layer_norm", f"{ow}.mlp_ln")
        lin(f"{ct2}/ffn/linear_0", f"{ow}.mlp.0")
        lin(f"{ct2}/ffn/linear_1", f"{ow}.mlp.2")

    lin("encoder/conv1", "encoder.conv1")
    lin("encoder/conv2", "encoder.conv2")
    out["encoder/position_encodings/encodings"] = state["encoder.positional_embedding"].astype(np.float16)
    for i in range(DIMS["n_audio_layer"]):
        block(f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    ln("encoder/layer_norm", "encoder.ln_post")
    lin("decoder/embeddings", "decoder.token_embedding", bias=False)
    out["decoder/position_encodings/encodings"] = state["decoder.positional_embedding"].astype(np.float16)
    for i in range(DIMS["n_text_layer"]):
        block(f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    ln("decoder/layer_norm", "decoder.ln")
    out["encoder/num_heads"] = np.array(DIMS["n_audio_head"], np.int16)
    out["decoder/num_heads"] = np.array(DIMS["n_text_head"], np.int16)
    for flag, value in {"activation": 3, "pre_norm": 1, "scale_embeddings": 0, "alibi": 0}.items():
        out[f"decoder/{flag}"] = np.array(value, np.int8)
    out["decoder/alignment_heads"] = np.array(1, np.int16)
    out["decoder/alignment_layer"] = np.array(-1, np.int16)
    return out


_PROJECTION_ALIAS = {"decoder/projection/weight": "decoder/embeddings/weight"}


@pytest.fixture
def ct2_dir(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    state, quantized = _random_whisper()
    model_dir = tmp_path / "ct2"
    model_dir.mkdir()
    write_ct2_bin(model_dir / "model.bin", _to_ct2(state, quantized), _PROJECTION_ALIAS)
    (model_dir / "config.json").write_text(json.dumps({"alignment_heads": ALIGNMENT_HEADS}))
    return model_dir, state


def test_read_resolves_aliases_and_dequantizes(ct2_dir: tuple[Path, dict[str, np.ndarray]]) -> None:
    model_dir, state = ct2_dir
    variables, meta = read_ct2_model(model_dir / "model.bin")
    assert (meta["binary_version"], meta["spec"], meta["spec_revision"]) == (6, "WhisperSpec", 3)
    assert meta["aliases"] == _PROJECTION_ALIAS
    assert meta["dtypes"]["decoder/embeddings/weight"] == "int8"
    assert not any(name.endswith("_scale") for name in variables)  # scales are consumed
    embedding = variables["decoder/embeddings/weight"]
    assert embedding.dtype == np.float32
    np.testing.assert_array_equal(embedding, state["decoder.token_embedding.weight"])
    assert variables["decoder/projection/weight"] is embedding
    assert int(variables["decoder/num_heads"]) == DIMS["n_text_head"]


def test_convert_loads_into_whisper_with_equal_weights(ct2_dir, tmp_path: Path) -> None:
    model_dir, state = ct2_dir
    out_file = tmp_path / "tiny.pt"
    dims = ct2_to_whisper_checkpoint(model_dir, out_file)
    assert dims == DIMS

    checkpoint = torch.load(out_file, weights_only=True)
    assert {t.dtype for t in checkpoint["model_state_dict"].values()} == {torch.float16}
    model = whisper.load_model(str(out_file), device="cpu")  # strict load inside
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key, expected in state.items():
        np.testing.assert_array_equal(loaded[key].float().numpy(), expected, err_msg=key)

    mask = np.frombuffer(gzip.decompress(base64.b85decode(checkpoint["alignment_heads"])), dtype=bool)
    assert np.argwhere(mask.reshape(DIMS["n_text_layer"], DIMS["n_text_head"])).tolist() == ALIGNMENT_HEADS
    model.set_alignment_heads(checkpoint["alignment_heads"])

    # Logits come from the tied token embedding: same as a model built from the source weights.
    reference = whisper.model.Whisper(whisper.model.ModelDimensions(**DIMS))
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    mel = torch.randn(1, DIMS["n_mels"], 2 * DIMS["n_audio_ctx"])
    tokens = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        torch.testing.assert_close(model(mel, tokens), reference(mel, tokens))


def test_truncated_file_raises_value_error_naming_it(ct2_dir, tmp_path: Path) -> None:
    model_dir, _ = ct2_dir
    data = (model_dir / "model.bin").read_bytes()
    for cut in (3, 40, len(data) // 2, len(data) - 5):
        (model_dir / "model.bin").write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"model\.bin") as err:
            ct2_to_whisper_checkpoint(model_dir, tmp_path / "out.pt")
        assert str(model_dir / "model.bin") in str(err.value)
    assert not (tmp_path / "out.pt").exists()


def test_trailing_bytes_and_wrong_spec_are_rejected(tmp_path: Path) -> None:
    variables = _to_ct2(*_random_whisper())
    model_bin = tmp_path / "model.bin"
    write_ct2_bin(model_bin, variables, _PROJECTION_ALIAS)
    model_bin.write_bytes(model_bin.read_bytes() * 2)  # parts joined twice
    with pytest.raises(ValueError, match="trailing bytes"):
        read_ct2_model(model_bin)
    write_ct2_bin(model_bin, variables, _PROJECTION_ALIAS, spec="TransformerSpec")
    with pytest.raises(ValueError, match="TransformerSpec"):
        ct2_to_whisper_checkpoint(tmp_path, tmp_path / "out.pt")
