"""`polyglm lm-sft`: the supervised fine-tune that makes the offline profile's language model an assistant.

The offline profile's LM is the pre-trained Gemma-3-270M (Chinese and English, no chat tuning). This job
trains one LoRA delta on it from what the repository has, in the question's language:

- every scenario pack's training conversations (`data/train.jsonl`): grounded answers stating the
  facts of the fenced KB passages with their citations, GLM-4-style tool calls and tool results,
  escalations, refusals of prompt injections hidden in passages or messages, label answers;
- a general zh/en set made here (`general_conversations_sft`): arithmetic, word translation, who the
  assistant is, so that it stays a general assistant and not only a pack's voice.

Split: a pack conversation whose index is divisible by 10 is held out (never trained on) and scores the
held-out loss; the packs' eval items are never in the data (tests/pipelines/test_lm_sft.py checks every
eval question against every training user turn, exactly and as a near copy). The fixed general set of
the forgetting guard (finetune.GENERAL_QA) is scored before and after and never trained on.

The delta lands in `polyglm/adapters/offline/lm/` (lora/, manifest.json with the data hash, loss.png);
`polyglm models prepare` merges it into the base (see platform/convert/gemma.py). It runs unchanged on a
CPU (bf16 where the CPU has it natively, see precision.py) or a GPU; users never run it to get the model.
"""

from __future__ import annotations

import hashlib
import json
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from polyglm.pipelines.finetune import (
    SCORE_BATCH,
    FinetuneError,
    _quiet_peft,
    build_rows,
    chat_messages,
    general_conversations,
    mean_loss,
    observation_role,
    score_general,
    token_losses,
)
from polyglm.platform import trainer
from polyglm.platform.loader import load_platform
from polyglm.platform.multimodal import part_identity
from polyglm.platform.precision import dtype_name
from polyglm.platform.trainer import Trainable, TrainerOptions
from polyglm.scenarios.loader import list_packs, load_pack, read_jsonl
from polyglm.scenarios.schema import ScenarioPack

DELTA_DIR = Path(__file__).resolve().parent.parent / "adapters" / "offline" / "lm"
HELD_OUT = "pack conversation index % 10 == 0"


@dataclass(frozen=True)
class SftOptions:
    profile: str = "gemma-base"  # profile whose (base) LM is trained; the offline profile merges the result
    out_dir: Path = DELTA_DIR
    stride: int = 3  # every stride-th training conversation of a pack (compute: ~300 tokens/s on 2 bf16 cores)
    sentiment_stride: int = 8  # the label-answer pack needs fewer: label scoring, not generation, classifies
    epochs: int = 1
    batch_size: int = 4
    lr: float = 3e-4
    lora_rank: int = 16
    max_tokens: int = 1536  # longer conversations lose prompt tokens on the left, never an answer
    held_out_per_pack: int = 8  # held-out conversations scored per pack before and after
    seed: int = 0
    lm_dtype: str = "auto"
    checkpoint_every: int = 10
    # Recompute each layer's activations in the backward pass: without it a batch of 4 x 1,536 tokens
    # held ~24 GB on a CPU and was OOM-killed; with it memory stays small for ~30 % more compute.
    # Not part of the checkpoint fingerprint: it changes memory and time, not the weights reached.
    gradient_checkpointing: bool = True


# --- the general zh/en set --------------------------------------------------------------------

_WORDS = (
    ("apple", "苹果"), ("water", "水"), ("book", "书"), ("teacher", "老师"), ("hospital", "医院"),
    ("train station", "火车站"), ("weather", "天气"), ("computer", "电脑"), ("friend", "朋友"),
    ("breakfast", "早餐"), ("library", "图书馆"), ("mountain", "山"), ("river", "河"), ("doctor", "医生"),
    ("student", "学生"), ("umbrella", "雨伞"), ("kitchen", "厨房"), ("music", "音乐"), ("window", "窗户"),
    ("shoes", "鞋子"),
)  # fmt: skip
_ZH_DIGITS = "零一二三四五六七八九十"


def _zh_number(n: int) -> str:
    if n <= 10:
        return _ZH_DIGITS[n]
    tens, ones = divmod(n, 10)
    head = "十" if tens == 1 else f"{_ZH_DIGITS[tens]}十"
    return head + (_ZH_DIGITS[ones] if ones else "")


def general_conversations_sft(seed: int = 0) -> list[tuple[str, list[dict]]]:
    """(lang, messages) of short general turns; none is a question of the forgetting guard's set."""
    rng = random.Random(seed)
    items: list[tuple[str, list[dict]]] = []

    def add(lang: str, question: str, answer: str) -> None:
        items.append((lang, [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]))

    for _ in range(30):
        a, b = rng.randint(11, 49), rng.randint(2, 49)
        add("en", f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.")
        add("zh", f"{a}加{b}等于多少？", f"{a}加{b}等于{a + b}。")
        c, d = rng.randint(2, 9), rng.randint(11, 19)
        add("en", f"What is {c} times {d}?", f"{c} times {d} is {c * d}.")
        add("zh", f"{_zh_number(c)}乘以{_zh_number(d)}是多少？", f"{_zh_number(c)}乘以{_zh_number(d)}等于{c * d}。")
    for english, chinese in _WORDS:
        add("en", f'How do you say "{english}" in Chinese?', f'"{english}" in Chinese is "{chinese}".')
        add("zh", f"“{chinese}”用英语怎么说？", f"“{chinese}”的英语是“{english}”。")
    add("en", "Who are you?", "I am the polyglm assistant. I answer from the documents and tools I am given.")
    add("zh", "你是谁？", "我是 polyglm 助手，根据提供给我的资料和工具来回答问题。")
    add("en", "Can you speak Chinese?", "Yes. I answer in the language you write in: Chinese or English.")
    add("zh", "你会说英语吗？", "会的。你用中文问，我就用中文回答；用英语问，我就用英语回答。")
    add("en", "Thank you!", "You're welcome. Is there anything else I can help with?")
    add("zh", "谢谢你！", "不客气，还有什么可以帮你的吗？")
    return items


# --- the corpus -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    train: list[list[dict]]  # conversations trained on
    held_out: list[list[dict]]  # pack conversations scored before/after, never trained on
    counts: dict  # source -> conversations trained
    sha256: str  # of every training file read and the general set, in order


def pack_stride(pack: ScenarioPack, options: SftOptions) -> int:
    return options.sentiment_stride if pack.labels else options.stride


def build_corpus(options: SftOptions, obs_role: str) -> Corpus:
    digest = hashlib.sha256()
    train, held_out, counts = [], [], {}
    for name in list_packs():
        pack = load_pack(name)
        if not pack.finetune_data or not pack.finetune_data.is_file():
            continue
        digest.update(pack.finetune_data.read_bytes())
        items = read_jsonl(pack, pack.finetune_data)
        kept = [i for i in range(len(items)) if i % 10 != 0][:: pack_stride(pack, options)]
        train += [chat_messages(items[i], obs_role)[0] for i in kept]
        held = [i for i in range(len(items)) if i % 10 == 0][: options.held_out_per_pack]
        held_out += [chat_messages(items[i], obs_role)[0] for i in held]
        counts[name] = len(kept)
    general = general_conversations_sft(options.seed)
    digest.update(json.dumps(general, ensure_ascii=False).encode())
    train += [messages for _, messages in general]
    counts["general"] = len(general)
    return Corpus(train, held_out, counts, digest.hexdigest())


def length_batches(lengths: list[int], batch_size: int, seed: int, epochs: int) -> list[list[int]]:
    """Shuffled batches of rows of similar length (padding to the longest row of a batch wastes compute)."""
    rng, batches = random.Random(seed), []
    for _ in range(epochs):
        order = list(range(len(lengths)))
        rng.shuffle(order)
        pool = batch_size * 8
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lengths.__getitem__)
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


# --- training ---------------------------------------------------------------------------------


def train_lm_delta(options: SftOptions) -> dict:
    """Train the delta on the profile's base LM; writes lora/, manifest.json and loss.png to out_dir."""
    from peft import LoraConfig, get_peft_model

    from polyglm.platform.convert.gemma import base_fingerprint
    from polyglm.platform.recipes import RECIPES, RepoFile

    platform = load_platform(options.profile)
    spec = platform.profile.part("language_model")
    recipe = RECIPES.get(spec.ref) if spec.locator == "prepared" else None
    if recipe is None or any(isinstance(f, RepoFile) for f in recipe.inputs):
        raise FinetuneError(
            f"profile {options.profile!r} does not have a base language model to train a delta on (none prepared, "
            "or one with a delta merged already); use --profile gemma-base"
        )
    lm = platform.lm
    torch.manual_seed(options.seed)
    lm.model.to(platform.training_dtype(options.lm_dtype).torch_dtype).requires_grad_(False).eval()
    tokenizer, device, stop_ids = lm.tokenizer, lm.device, lm.stop_token_ids
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    corpus = build_corpus(options, observation_role(tokenizer))
    train, stats = build_rows(tokenizer, corpus.train, options.max_tokens, stop_ids)
    held_out, _ = build_rows(tokenizer, corpus.held_out, options.max_tokens, stop_ids)
    general = {lang: build_rows(tokenizer, general_conversations(lang), options.max_tokens, stop_ids)[0]
               for lang in ("en", "zh")}  # fmt: skip

    def score(model) -> dict:
        return {"held_out": mean_loss(model, held_out, pad_id, device, SCORE_BATCH // 4, "held-out"),
                **score_general(model, general, pad_id, device, SCORE_BATCH)}  # fmt: skip

    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    identity = part_identity(platform, "language_model")
    training = {k: v for k, v in asdict(options).items()
                if k not in {"out_dir", "checkpoint_every", "gradient_checkpointing"}}  # fmt: skip
    fingerprint = trainer.make_fingerprint(options=training, data=corpus.sha256, lm=identity)
    checkpoint = out_dir / "checkpoint.pt"
    saved, _ = trainer.read_checkpoint(checkpoint, fingerprint)
    before = saved["extra"] if saved else score(lm.model)
    torch.manual_seed(options.seed)
    config = LoraConfig(r=options.lora_rank, lora_alpha=2 * options.lora_rank, lora_dropout=0.05,
                        target_modules=list(lm.lora_targets), task_type="CAUSAL_LM")  # fmt: skip
    with _quiet_peft():
        model = get_peft_model(lm.model, config)
    if options.gradient_checkpointing:
        model.enable_input_require_grads()  # the frozen embedding's output must carry grad for recomputation
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    state = trainer.train(
        Trainable.of_lora(model),
        length_batches([len(r.ids) for r in train], options.batch_size, options.seed, options.epochs),
        lambda batch: token_losses(model, [train[i] for i in batch], pad_id, device).mean(),
        TrainerOptions(lr=options.lr, checkpoint_every=options.checkpoint_every, desc="lm-sft"),
        checkpoint,
        fingerprint,
        initial_extra=lambda: before,
    )
    model.eval()
    after = score(model)
    trainer.plot_losses(state.losses, before["held_out"], after["held_out"], out_dir / "loss.png",
                        f"polyglm lm-sft on {identity[0]}")  # fmt: skip
    with _quiet_peft():
        model.save_pretrained(out_dir / "lora")
    manifest = {
        "name": "polyglm-sft",
        "base": identity[0],
        "base_hash": identity[1],
        "base_fingerprint": base_fingerprint([f.sha256 for f in recipe.inputs]),
        "licence": recipe.licence,
        "lora": {"r": options.lora_rank, "alpha": 2 * options.lora_rank, "target_modules": list(lm.lora_targets)},
        "options": json.loads(json.dumps(asdict(options), default=str)),
        "data": {"sha256": corpus.sha256, "conversations": corpus.counts, "held_out": HELD_OUT,
                 "rows": len(train), "labelled_tokens": stats.labelled_tokens,
                 "tokens": sum(len(r.ids) for r in train), "truncated_rows": stats.truncated_rows},
        "metrics": {
            **{f"{k}_loss_before": round(v, 4) for k, v in before.items()},
            **{f"{k}_loss_after": round(v, 4) for k, v in after.items()},
            "steps": state.step, "train_seconds_this_run": round(state.seconds_this_run, 1),
            "lm_dtype": dtype_name(next(model.parameters()).dtype),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(["polyglm", *sys.argv[1:]]) if sys.argv[0].endswith("polyglm") else "",
    }  # fmt: skip
    (out_dir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    checkpoint.unlink(missing_ok=True)
    lm.model = model.unload()
    return manifest
