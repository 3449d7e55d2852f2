"""The language model part: weights, tokenizer and chat template, plus what fine-tuning must know."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# peft has no default LoRA targets for transformers' native GLM types; these are their module names.
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "glm": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"),
    "glm4": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gemma3_text": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


def lora_targets(model_type: str) -> tuple[str, ...]:
    try:
        return LORA_TARGETS[model_type]
    except KeyError:
        raise KeyError(
            f"no LoRA target modules known for model type {model_type!r}; "
            f"add them to LORA_TARGETS in {__file__} (known: {', '.join(sorted(LORA_TARGETS))})"
        ) from None


@dataclass
class LanguageModel:
    model: Any  # transformers causal LM in eval mode
    tokenizer: Any  # its tokenizer, with a chat template
    device: Any
    dtype: Any
    name: str  # folder or hub id shown to users

    @classmethod
    def load(cls, path: Path, options: dict, device, dtype) -> LanguageModel:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
        model.to(device).eval()
        if str(device) == "cpu":  # batch-1 decode reads weights ~1.7x faster transposed (decode_layout.py)
            from polyglm.platform.decode_layout import use_transposed_weights

            use_transposed_weights(model)
        if tokenizer.chat_template is None:
            raise ValueError(f"tokenizer in {path} has no chat template; polyglm needs a chat model")
        return cls(model=model, tokenizer=tokenizer, device=device, dtype=dtype, name=path.name)

    @property
    def model_type(self) -> str:
        return self.model.config.model_type

    @property
    def lora_targets(self) -> tuple[str, ...]:
        return lora_targets(self.model_type)

    @property
    def stop_token_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        ids = eos if isinstance(eos, list) else [eos]
        return [i for i in ids if i is not None]

    def chat_ids(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        """Token ids of `messages` rendered with the model's own chat template."""
        rendered = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False
        )
        return self.tokenizer(rendered, add_special_tokens=False)["input_ids"]


def labelled_token_losses(model: Any, labels: Any, **inputs: Any) -> Any:
    """Cross-entropy (1-D, no reduction) of every labelled next token; `inputs` are the model's inputs.

    The output head runs only where a label is: Gemma's 262k-token head costs more than its whole body
    at every other position, and a full (batch, length, vocabulary) fp32 logits tensor is gigabytes.
    A head that is not a plain projection (final logit soft-capping) gets the full forward instead.
    """
    import torch
    from peft import PeftModel

    from polyglm.platform.fusion import IGNORE_INDEX

    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    base = model.get_base_model() if isinstance(model, PeftModel) else model  # LoRA layers sit inside it
    if getattr(base.config, "final_logit_softcapping", None):
        logits = model(**inputs, use_cache=False).logits[:, :-1][keep]
    else:
        hidden = base.get_decoder()(**inputs, use_cache=False).last_hidden_state
        logits = base.get_output_embeddings()(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="none")
