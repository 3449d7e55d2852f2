"""Gemma-3-270M from its packaged GGUF: join the chunks, dequantise, add a chat template, merge a delta.

The packaged model is the *base* (pre-trained) Gemma-3-270M: its GGUF carries no chat template. polyglm
gives it Gemma's turn layout (`<start_of_turn>user ... <end_of_turn>`), with the system prompt as its own
turn, and teaches that layout with its own supervised fine-tune (`polyglm lm-sft`), shipped as a LoRA
delta in the repository and merged here by `polyglm models prepare`. A delta records the base it was
trained on (`base_fingerprint`); merging it into another base is refused, as is a delta whose bytes do
not match the sha256 pinned in recipes.py.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from polyglm.platform.errors import PrepareError

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
END_OF_TURN = "<end_of_turn>"
# Bump when the build's output changes (template, stop tokens): deltas trained on the old base are refused.
BASE_LAYOUT = 1


def base_fingerprint(gguf_sha256: Sequence[str]) -> str:
    """What a delta must have been trained on: the GGUF chunks' hashes and the layout built from them."""
    import hashlib

    text = json.dumps({"gguf": list(gguf_sha256), "layout": BASE_LAYOUT})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def join_chunks(chunks: Sequence[Path], target: Path) -> Path:
    with open(target, "wb") as joined:
        for chunk in chunks:
            with open(chunk, "rb") as handle:
                shutil.copyfileobj(handle, joined)
    return target


def build_gemma_base(chunks: Sequence[Path], out_dir: Path) -> dict:
    """Dequantised fp32 Gemma-3-270M with polyglm's chat template and `<end_of_turn>` as a stop token."""
    from polyglm.platform.recipes import build_gguf_lm

    work = out_dir / "gguf"
    work.mkdir()
    gguf = join_chunks(chunks, work / "gemma-3-270m-q4_k_m.gguf")
    info = build_gguf_lm([gguf], out_dir)
    shutil.rmtree(work)
    _set_chat_layout(out_dir)
    return info


def _set_chat_layout(out_dir: Path) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)
    generation = GenerationConfig.from_pretrained(out_dir)
    eos = generation.eos_token_id if isinstance(generation.eos_token_id, list) else [generation.eos_token_id]
    generation.eos_token_id = [*eos, tokenizer.convert_tokens_to_ids(END_OF_TURN)]
    generation.save_pretrained(out_dir)


def read_delta_manifest(delta_dir: Path) -> dict:
    path = delta_dir / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PrepareError(
            f"the language-model delta's manifest {path} is unreadable ({exc}); restore it: git checkout -- {delta_dir}"
        ) from None


def checked_delta(delta_dir: Path, expected_base: str) -> dict:
    """The delta's manifest, when the delta was trained on `expected_base`; otherwise the error and the fix."""
    manifest = read_delta_manifest(delta_dir)
    if manifest.get("base_fingerprint") != expected_base:
        raise PrepareError(
            f"the delta in {delta_dir} was trained on base {manifest.get('base_fingerprint')!r}, but this base is "
            f"{expected_base!r} (another GGUF or chat layout); retrain it: polyglm lm-sft --profile gemma-base"
        )
    return manifest


def merge_delta(model_dir: Path, delta_dir: Path, expected_base: str) -> dict:
    """Merge the LoRA delta in `delta_dir` into the fp32 model in `model_dir`, in place."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    manifest = checked_delta(delta_dir, expected_base)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, delta_dir / "lora").merge_and_unload()
    merged.save_pretrained(model_dir)
    return {
        "base": manifest.get("base"),
        "delta": f"{manifest.get('name')} (LoRA r={manifest.get('lora', {}).get('r')})",
        "delta_data_sha256": manifest.get("data", {}).get("sha256"),
        "licence": manifest.get("licence"),
    }


def build_gemma_with_delta(chunks: Sequence[Path], delta_dir: Path, expected_base: str, out_dir: Path) -> dict:
    """The base built from `chunks` with the delta in `delta_dir` merged. `expected_base` is the fingerprint of
    the chunks' pinned hashes (prepare has checked every chunk against them)."""
    checked_delta(delta_dir, expected_base)  # before the minute of dequantising, not after
    info = build_gemma_base(chunks, out_dir)
    return {**info, **merge_delta(out_dir, delta_dir, expected_base)}
