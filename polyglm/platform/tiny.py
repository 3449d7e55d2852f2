"""Builders for the `tiny` profile: random-initialised models made from configs in seconds.

Every builder is seeded, so two builds give identical weights and tests can pin exact numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from polyglm.platform.chat_format import GLM_CHAT_TEMPLATE, GLM_SPECIAL_TOKENS, GLM_STOP_TOKENS

CORPUS = Path(__file__).parent / "data" / "tiny_corpus.txt"
SEED = 1234
TINY_VOCAB = 2048


def train_tiny_tokenizer(out_dir: Path):
    """Byte-level BPE trained on the repo's bilingual corpus, with GLM special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=list(GLM_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train([str(CORPUS)], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in GLM_SPECIAL_TOKENS if t != "<|endoftext|>"],
        chat_template=GLM_CHAT_TEMPLATE,
        model_max_length=512,
    )
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_glm(out_dir: Path) -> dict:
    import torch
    from transformers import GenerationConfig, GlmConfig, GlmForCausalLM

    tokenizer = train_tiny_tokenizer(out_dir)
    torch.manual_seed(SEED)
    stop_ids = tokenizer.convert_tokens_to_ids(list(GLM_STOP_TOKENS))
    config = GlmConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop_ids,
        tie_word_embeddings=False,
    )
    model = GlmForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()), "vocab": len(tokenizer)}


TINY_VIT_ARGS = {"img_size": 64, "patch_size": 16, "embed_dim": 64, "depth": 2, "num_heads": 2}
TINY_VIT_LABELS = ["cat", "dog", "coffee", "text", "chart", "face", "car", "tree", "food", "other"]


def build_tiny_vit(out_dir: Path) -> dict:
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    architecture = "vit_tiny_patch16_224"
    model = timm.create_model(architecture, pretrained=False, num_classes=len(TINY_VIT_LABELS), **TINY_VIT_ARGS)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out_dir / "model.safetensors")
    config = {
        "architecture": architecture,
        "num_classes": len(TINY_VIT_LABELS),
        "model_args": TINY_VIT_ARGS,
        "label_names": TINY_VIT_LABELS,
        "pretrained_cfg": {
            "input_size": [3, 64, 64],
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "interpolation": "bicubic",
            "crop_pct": 1.0,
        },
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return {"parameters": sum(p.numel() for p in model.parameters())}


def build_tiny_whisper(out_dir: Path) -> dict:
    import torch
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(SEED)
    dims = ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
        n_vocab=51865, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2,
    )  # fmt: skip
    model = Whisper(dims)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, out_dir / "model.pt")
    return {"parameters": sum(p.numel() for p in model.parameters())}


def build_tiny_embedding(out_dir: Path) -> dict:
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = train_tiny_tokenizer(out_dir)
    torch.manual_seed(SEED)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = BertModel(config)  # with the pooler, like real sentence-transformers checkpoints
    model.save_pretrained(out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()), "dim": config.hidden_size}
