"""GLM-4 chat format: special tokens and the Jinja chat template used by the tiny profile.

Real GLM checkpoints ship their own template; the tiny tokenizer copies GLM-4's layout so that
tests exercise the same prompt shape (`[gMASK]<sop><|system|>\n...<|user|>\n...<|assistant|>\n`).
"""

# Order matters: ids are assigned in this order when the tiny tokenizer is trained.
GLM_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "[MASK]",
    "[gMASK]",
    "[sMASK]",
    "<sop>",
    "<eop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|begin_of_image|>",
    "<|image|>",
    "<|end_of_image|>",
    "<|begin_of_audio|>",
    "<|audio|>",
    "<|end_of_audio|>",
)

# GLM-4 stops when the model starts the next turn, not only at end-of-text.
GLM_STOP_TOKENS = ("<|endoftext|>", "<|user|>", "<|observation|>")

GLM_CHAT_TEMPLATE = (
    "[gMASK]<sop>"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
