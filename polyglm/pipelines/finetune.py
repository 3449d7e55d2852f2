"""`polyglm finetune`: LoRA fine-tuning of the language model on a scenario pack's conversations.

Data: the pack's `data/train.jsonl` (SCHEMA.md), text only for now: image/audio fields are dropped and
counted. Assistant `tool_calls` become `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` lines,
the format `scenario_chat` parses; `observation` turns keep their role where the chat template knows
it (GLM) and otherwise become user turns prefixed "Tool result:", exactly as `scenario_chat` sends them.

Labels: one pass per conversation. The conversation is rendered once with the model's chat template
and tokenized once with character offsets; each assistant turn's character span comes from
rendering the messages before it (with the generation prompt) and up to it, so every assistant turn
is trained, and system, user and observation tokens are masked. Where the template closes a turn
without a stop token (GLM), the stop token that follows is labelled too (or appended after the last
turn), so the model learns to stop. A conversation longer than `max_tokens` becomes left-truncated
windows: a window ends at an answer's end and labels only the answers that fit whole in it; an
answer is never cut.

Guard: a fixed general question set (English and Chinese) is scored before and after training. If its
loss rises by more than `forgetting_threshold` (relative), the adapter is saved but not made the
scenario's default unless `force`. Defaults live in `<finetune root>/<profile>/default.json`
(scenario -> adapter folder); `load_finetuned` applies the default to a platform's LM and refuses an
adapter trained for another LM.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from polyglm.platform import trainer
from polyglm.platform.config import Settings
from polyglm.platform.errors import PolyglmError
from polyglm.platform.fusion import IGNORE_INDEX
from polyglm.platform.language_model import labelled_token_losses
from polyglm.platform.loader import Platform, load_platform
from polyglm.platform.multimodal import drop_media_lora, part_identity
from polyglm.platform.precision import AUTO, DTYPES, dtype_name
from polyglm.platform.trainer import Trainable, TrainerOptions
from polyglm.scenarios.loader import load_pack, read_jsonl

ROLES = ("system", "user", "assistant", "observation")
MEDIA_FIELDS = ("image", "audio")
SPLIT_RULE = "index % 10 == 0 held out"
SCORE_BATCH = 16  # rows per forward pass when scoring (no gradients)
LABEL_BUILDER = "single pass: every assistant turn labelled (+ its stop token); left-truncated windows"


class FinetuneError(PolyglmError):
    """Fine-tuning cannot run, or an adapter cannot be used, as asked."""


@dataclass(frozen=True)
class FinetuneOptions:
    scenario: str  # scenario pack name (a folder of polyglm/scenarios/packs)
    profile: str = "offline"  # model profile whose language model is fine-tuned
    epochs: int = 1  # passes over the training split
    batch_size: int = 4  # training rows per optimizer step
    lr: float = 2e-4  # AdamW learning rate of the LoRA weights
    lora_rank: int = 8  # LoRA r; alpha = 2r, dropout 0.05
    max_items: int | None = None  # only the first N conversations of train.jsonl (quick runs); None = all
    max_tokens: int = 512  # tokens per row: long conversations lose prompt tokens on the left, never an answer
    seed: int = 0  # LoRA initialisation and batch order
    lm_dtype: str = "auto"  # the LM's dtype while training: auto = precision.choose_dtype("training"); LoRA stays fp32
    forgetting_threshold: float = 0.10  # tolerated relative rise of the general-set loss for becoming the default
    make_default: bool = True  # make the adapter the scenario's default when the guard allows it
    force: bool = False  # make it the default even when the guard objects (explicit override)
    checkpoint_every: int = 25  # optimizer steps between resumable checkpoints (a rerun resumes)
    out_dir: Path | None = None  # adapter folder; None = <finetune root>/<profile>/<scenario>
    finetune_root: Path | None = None  # holds <profile>/default.json; None = Settings.from_env().cache_dir/"finetune"


# --- the fixed general set for the forgetting guard -------------------------------------------

# Short facts a small chat model knows. Scored as answer loss before and after fine-tuning; never trained on.
GENERAL_QA: tuple[tuple[str, str, str], ...] = (
    ("en", "What is the capital of France?", "The capital of France is Paris."),
    ("en", "What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("en", "What is the capital of Italy?", "The capital of Italy is Rome."),
    ("en", "What is the capital of Germany?", "The capital of Germany is Berlin."),
    ("en", "What is the capital of Spain?", "The capital of Spain is Madrid."),
    ("en", "What is the capital of the United Kingdom?", "The capital of the United Kingdom is London."),
    ("en", "What is the capital of Canada?", "The capital of Canada is Ottawa."),
    ("en", "What is the capital of Egypt?", "The capital of Egypt is Cairo."),
    ("en", "What is 2 plus 2?", "2 plus 2 is 4."),
    ("en", "What is 9 times 6?", "9 times 6 is 54."),
    ("en", "What is 100 minus 37?", "100 minus 37 is 63."),
    ("en", "What is 12 divided by 4?", "12 divided by 4 is 3."),
    ("en", "What is half of 50?", "Half of 50 is 25."),
    ("en", "What is 3 squared?", "3 squared is 9."),
    ("en", "What colour is the sky on a clear day?", "The sky is blue on a clear day."),
    ("en", "What colour is grass?", "Grass is green."),
    ("en", "What colour do you get by mixing blue and yellow?", "Mixing blue and yellow gives green."),
    ("en", "What colour are ripe bananas?", "Ripe bananas are yellow."),
    ("en", "What colour is snow?", "Snow is white."),
    ("en", "At what temperature does water boil at sea level?", "Water boils at 100 degrees Celsius at sea level."),
    ("en", "At what temperature does water freeze?", "Water freezes at 0 degrees Celsius."),
    ("en", "What gas do humans need to breathe?", "Humans need oxygen to breathe."),
    ("en", "What do plants need for photosynthesis?", "Plants need sunlight, water and carbon dioxide."),
    ("en", "What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system."),
    ("en", "Which star is closest to Earth?", "The Sun is the star closest to Earth."),
    ("en", "How many days are in a week?", "There are seven days in a week."),
    ("en", "How many months are in a year?", "There are twelve months in a year."),
    ("en", "How many hours are in a day?", "There are 24 hours in a day."),
    ("en", "How many legs does a spider have?", "A spider has eight legs."),
    ("en", "What is H2O?", "H2O is water."),
    ("en", "What force pulls objects toward the Earth?", "Gravity pulls objects toward the Earth."),
    ("en", "What is the opposite of cold?", "The opposite of cold is hot."),
    ("en", "What is the plural of child?", "The plural of child is children."),
    ("en", "Which animal is called the king of the jungle?", "The lion is called the king of the jungle."),
    ("en", "What do bees make?", "Bees make honey."),
    ("en", "Which ocean is the largest?", "The Pacific Ocean is the largest ocean."),
    ("en", "What is the longest river in Africa?", "The Nile is the longest river in Africa."),
    ("en", "How many continents are there?", "There are seven continents."),
    ("en", "Which instrument has 88 keys?", "The piano has 88 keys."),
    ("en", "Which organ pumps blood through the body?", "The heart pumps blood through the body."),
    ("zh", "中国的首都是哪里？", "中国的首都是北京。"),
    ("zh", "日本的首都是哪里？", "日本的首都是东京。"),
    ("zh", "法国的首都是哪里？", "法国的首都是巴黎。"),
    ("zh", "二加三等于几？", "二加三等于五。"),
    ("zh", "六乘以七等于多少？", "六乘以七等于四十二。"),
    ("zh", "十减四等于几？", "十减四等于六。"),
    ("zh", "晴朗的天空是什么颜色？", "晴朗的天空是蓝色的。"),
    ("zh", "草是什么颜色的？", "草是绿色的。"),
    ("zh", "雪是什么颜色的？", "雪是白色的。"),
    ("zh", "在海平面上，水在多少摄氏度沸腾？", "在海平面上，水在100摄氏度沸腾。"),
    ("zh", "水在多少摄氏度结冰？", "水在0摄氏度结冰。"),
    ("zh", "一年有几个月？", "一年有十二个月。"),
    ("zh", "一周有几天？", "一周有七天。"),
    ("zh", "一天有多少小时？", "一天有24小时。"),
    ("zh", "太阳系最大的行星是哪颗？", "太阳系最大的行星是木星。"),
    ("zh", "人呼吸需要什么气体？", "人呼吸需要氧气。"),
    ("zh", "蜜蜂酿造什么？", "蜜蜂酿造蜂蜜。"),
    ("zh", "中国最长的河流是哪条？", "中国最长的河流是长江。"),
    ("zh", "地球绕着什么转？", "地球绕着太阳转。"),
    ("zh", "心脏有什么作用？", "心脏把血液输送到全身。"),
)


# --- conversations -> chat messages -----------------------------------------------------------


def render_tool_call(name: str, arguments: dict) -> str:
    """The tool-call text the model learns; `scenario_chat.parse_tool_call` reads it back."""
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}</tool_call>"


def observation_role(tokenizer: Any) -> str:
    """`observation` where the chat template knows that role (GLM), else `user` (tool results folded in).

    The same rule as `scenario_chat`: training and inference must show tool results the same way.
    """
    if "observation" in (tokenizer.chat_template or "") or "<|observation|>" in tokenizer.get_vocab():
        probe = [{"role": "user", "content": "q"}, {"role": "observation", "content": "r"}]
        with contextlib.suppress(Exception):  # a template that raises on the role gets the folded form
            tokenizer.apply_chat_template(probe, tokenize=False)
            return "observation"
    return "user"


def chat_messages(item: dict, obs_role: str) -> tuple[list[dict], int]:
    """Plain {role, content} messages for the chat template, and how many media fields were dropped."""
    messages, media = [], 0
    for number, raw in enumerate(item.get("messages") or []):
        role, content = raw.get("role"), raw.get("content") or ""
        if role not in ROLES or not isinstance(content, str):
            raise FinetuneError(
                f"conversation {item.get('id', '?')!r}, message {number}: role must be one of {', '.join(ROLES)} "
                f"with text content, got role {role!r}"
            )
        media += sum(1 for key in MEDIA_FIELDS if raw.get(key))
        if role == "assistant" and raw.get("tool_calls"):
            calls = "\n".join(render_tool_call(c["name"], c.get("arguments", {})) for c in raw["tool_calls"])
            content = f"{content.rstrip()}\n{calls}" if content.strip() else calls
        if role == "observation" and obs_role != "observation":
            role, content = obs_role, f"Tool result: {content}"
        messages.append({"role": role, "content": content})
    return messages, media


# --- labels -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One training/scoring sequence: token ids and labels (IGNORE_INDEX except on answer tokens)."""

    ids: list[int]
    labels: list[int]
    source: int  # index of the conversation it came from
    truncated: bool  # prompt tokens were dropped on the left


@dataclass
class LabelStats:
    assistant_turns: int = 0  # assistant turns labelled in some row
    answers_too_long: int = 0  # assistant turns longer than max_tokens: skipped, never cut
    truncated_rows: int = 0
    labelled_tokens: int = 0


def _render(tokenizer: Any, messages: Sequence[dict], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(list(messages), add_generation_prompt=add_generation_prompt, tokenize=False)


def answer_spans(tokenizer: Any, messages: Sequence[dict], stop_ids: Sequence[int]) -> tuple[list[int], list[tuple]]:
    """Token ids of the whole conversation and each assistant turn's [start, end) token span.

    A span covers what the model must produce for that turn: the template's text of the turn (content
    and any closing tokens) plus, where that holds no stop token, the stop token that follows (or one
    appended after the last turn).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise FinetuneError("fine-tuning needs a fast (Rust) tokenizer: its character offsets place the labels")
    text = _render(tokenizer, messages, add_generation_prompt=False)
    char_spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant" or index == 0:  # an opening assistant turn answers nothing
            continue
        prompt = _render(tokenizer, messages[:index], add_generation_prompt=True)
        upto = _render(tokenizer, messages[: index + 1], add_generation_prompt=False)
        if not (text.startswith(upto) and upto.startswith(prompt)):
            raise FinetuneError(
                "the chat template does not render a conversation as its turns in order "
                f"(assistant turn {index}); cannot place labels"
            )
        char_spans.append((len(prompt), len(upto)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
    stops = set(stop_ids)
    spans = []
    for begin, end in char_spans:
        tokens = [t for t, (start, _) in enumerate(offsets) if begin <= start < end]
        if not tokens:
            continue
        first, last = tokens[0], tokens[-1] + 1
        if not stops & set(ids[first:last]):
            if last < len(ids) and ids[last] in stops:
                last += 1
            elif last == len(ids) and stops:
                ids.append(stop_ids[0])
                last += 1
        spans.append((first, last))
    return ids, spans


def conversation_rows(
    tokenizer: Any, messages: Sequence[dict], max_tokens: int, stop_ids: Sequence[int], source: int = 0
) -> tuple[list[Row], LabelStats]:
    """Rows of at most `max_tokens` tokens labelling every assistant turn of one conversation once.

    Windows are built from the last answer backwards: a window ends where an answer ends, keeps the
    `max_tokens` tokens before that point and labels every answer lying whole inside it with at least
    one token of context; answers it could not hold start the next window.
    """
    ids, spans = answer_spans(tokenizer, messages, stop_ids)
    stats = LabelStats()
    fits = [(s, e) for s, e in spans if e - s < max_tokens]
    stats.answers_too_long = len(spans) - len(fits)
    rows = []
    while fits:
        end = fits[-1][1]
        start = max(0, end - max_tokens)
        inside = [(s, e) for s, e in fits if s > start and e <= end]
        labels = [IGNORE_INDEX] * (end - start)
        for s, e in inside:
            labels[s - start : e - start] = ids[s:e]
        rows.append(Row(ids[start:end], labels, source, truncated=start > 0))
        stats.assistant_turns += len(inside)
        stats.labelled_tokens += sum(e - s for s, e in inside)
        stats.truncated_rows += start > 0
        fits = [span for span in fits if span not in inside]
    rows.reverse()
    return rows, stats


def build_rows(
    tokenizer: Any, conversations: Sequence[Sequence[dict]], max_tokens: int, stop_ids: Sequence[int]
) -> tuple[list[Row], LabelStats]:
    rows, total = [], LabelStats()
    for source, messages in enumerate(conversations):
        found, stats = conversation_rows(tokenizer, messages, max_tokens, stop_ids, source)
        rows += found
        for key, value in asdict(stats).items():
            setattr(total, key, getattr(total, key) + value)
    return rows, total


def general_conversations(lang: str | None = None) -> list[list[dict]]:
    return [
        [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        for code, question, answer in GENERAL_QA
        if lang is None or code == lang
    ]


# --- loss -------------------------------------------------------------------------------------


def _batch(rows: Sequence[Row], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row.ids)] = torch.tensor(row.ids)
        labels[i, : len(row.labels)] = torch.tensor(row.labels)
        mask[i, : len(row.ids)] = 1
    return ids.to(device), mask.to(device), labels.to(device)


def token_losses(model: Any, rows: Sequence[Row], pad_id: int, device) -> torch.Tensor:
    """Cross-entropy of every labelled token of `rows` (1-D). The output head runs on labelled positions only."""
    ids, mask, labels = _batch(rows, pad_id, device)
    return labelled_token_losses(model, labels, input_ids=ids, attention_mask=mask)


def loss_sum(model: Any, rows: Sequence[Row], pad_id: int, device, batch_size: int, desc: str) -> tuple[float, int]:
    """(summed answer loss, labelled tokens) of `rows`, without gradients, in eval mode."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch", leave=False):
            losses = token_losses(model, rows[start : start + batch_size], pad_id, device)
            total, count = total + float(losses.sum()), count + losses.numel()
    model.train(was_training)
    return total, count


def mean_loss(model: Any, rows: Sequence[Row], pad_id: int, device, batch_size: int, desc: str = "score") -> float:
    """Token-weighted mean answer loss (nats/token) of `rows`."""
    total, count = loss_sum(model, rows, pad_id, device, batch_size, desc)
    return total / count if count else float("nan")


def score_general(model: Any, rows_by_lang: dict[str, list[Row]], pad_id: int, device, batch_size: int) -> dict:
    """The forgetting guard's measure: mean answer loss on the fixed general set, overall and per language."""
    sums = {
        lang: loss_sum(model, rows, pad_id, device, batch_size, f"general {lang}")
        for lang, rows in rows_by_lang.items()
    }
    scores = {f"general_{lang}": total / max(count, 1) for lang, (total, count) in sums.items()}
    scores["general"] = sum(t for t, _ in sums.values()) / max(sum(c for _, c in sums.values()), 1)
    return scores


# --- defaults registry ------------------------------------------------------------------------


def finetune_root(root: Path | None = None) -> Path:
    return Path(root) if root else Settings.from_env().cache_dir / "finetune"


def defaults_file(profile: str, root: Path | None = None) -> Path:
    return finetune_root(root) / profile / "default.json"


def read_defaults(profile: str, root: Path | None = None) -> dict[str, str]:
    path = defaults_file(profile, root)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FinetuneError(f"{path} is not readable JSON ({exc}); delete it and rerun `polyglm finetune`") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def default_adapter(profile: str, scenario: str, root: Path | None = None) -> Path | None:
    """The folder of `scenario`'s default fine-tuned adapter on `profile` (lora/ + manifest.json), or None."""
    folder = read_defaults(profile, root).get(scenario)
    return Path(folder) if folder else None


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft 0.21 calls a transformers 5 method that warns it is deprecated; nothing for users to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def set_default(profile: str, scenario: str, folder: Path | None, root: Path | None = None) -> None:
    """Point `scenario` at `folder` (None removes it): read-modify-write under a lock, replaced atomically."""
    path = defaults_file(profile, root)
    with _locked(path):
        defaults = read_defaults(profile, root)
        if folder is None:
            defaults.pop(scenario, None)
        else:
            defaults[scenario] = str(Path(folder).resolve())
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(sorted(defaults.items())), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file() or not (Path(folder) / "lora").is_dir():
        raise FinetuneError(
            f"{folder} is not a fine-tuned adapter (needs manifest.json and lora/); rerun `polyglm finetune`"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FinetuneError(f"{path} is not readable JSON ({exc}); rerun `polyglm finetune`") from None


def check_lm(manifest: dict, platform: Platform, folder: Path) -> None:
    lm_id, lm_hash = part_identity(platform, "language_model")
    if (manifest.get("lm_id"), manifest.get("lm_hash")) != (lm_id, lm_hash):
        raise FinetuneError(
            f"adapter {folder} was trained for language model {manifest.get('lm_id')} "
            f"(weights {manifest.get('lm_hash')}), but profile {platform.profile.name!r} has {lm_id} "
            f"(weights {lm_hash}); fine-tune for this model: "
            f"polyglm finetune --scenario {manifest.get('scenario')} --profile {platform.profile.name}"
        )


def load_finetuned(platform: Platform, scenario: str, adapter: Path | None = None, root: Path | None = None) -> dict:
    """Apply `scenario`'s default LoRA (or the adapter folder given) to the platform's LM; returns its manifest.

    An adapter applied earlier is removed first, so switching scenarios never stacks adapters.
    """
    from peft import PeftModel

    profile = platform.profile.name
    folder = adapter or default_adapter(profile, scenario, root)
    if folder is None:
        raise FinetuneError(
            f"scenario {scenario!r} has no default fine-tuned adapter for profile {profile!r} "
            f"(none in {defaults_file(profile, root)}); run: polyglm finetune --scenario {scenario} --profile {profile}"
        )
    if not Path(folder).is_dir():
        raise FinetuneError(
            f"the adapter folder {folder} for scenario {scenario!r} is missing; "
            f"run: polyglm finetune --scenario {scenario} --profile {profile}"
        )
    manifest = read_manifest(Path(folder))
    if manifest.get("scenario") != scenario:
        raise FinetuneError(f"adapter {folder} was trained for scenario {manifest.get('scenario')!r}, not {scenario!r}")
    check_lm(manifest, platform, Path(folder))
    drop_media_lora(platform)  # one LoRA on the LM at a time: media turns fall back to stage-1 projectors
    lm = platform.lm
    base = lm.model.unload() if isinstance(lm.model, PeftModel) else lm.model
    with _quiet_peft():
        lm.model = PeftModel.from_pretrained(base, Path(folder) / "lora", is_trainable=False).eval()
    return manifest


# --- training ---------------------------------------------------------------------------------


def _fingerprint(options: FinetuneOptions, data_hash: str, lm: tuple[str, str]) -> str:
    """What a checkpoint must match to be resumed: everything that changes the training trajectory."""
    training = {k: v for k, v in asdict(options).items()
                if k not in {"make_default", "force", "forgetting_threshold", "checkpoint_every", "out_dir",
                             "finetune_root"}}  # fmt: skip
    return trainer.make_fingerprint(options=training, data=data_hash, lm=lm)


def _validate(options: FinetuneOptions) -> None:
    problems = []
    if not options.scenario:
        problems.append("scenario is required")
    if options.max_items is not None and options.max_items < 2:
        problems.append(f"max_items must be at least 2 (item 0 is held out), got {options.max_items}")
    for name in ("epochs", "batch_size", "lora_rank", "checkpoint_every"):
        if getattr(options, name) < 1:
            problems.append(f"{name} must be at least 1, got {getattr(options, name)}")
    if options.max_tokens < 16:
        problems.append(f"max_tokens must be at least 16, got {options.max_tokens}")
    if options.lr <= 0 or options.forgetting_threshold < 0:
        problems.append("lr must be > 0 and forgetting_threshold >= 0")
    if options.lm_dtype not in (AUTO, *DTYPES):
        problems.append(f"lm_dtype {options.lm_dtype!r} is not one of {AUTO}, {', '.join(DTYPES)}")
    if problems:
        raise FinetuneError("finetune options: " + "; ".join(problems))


def resolved_out_dir(options: FinetuneOptions) -> Path:
    return Path(options.out_dir or finetune_root(options.finetune_root) / options.profile / options.scenario)


def _decide(options: FinetuneOptions, before: float, after: float) -> tuple[bool, str, float]:
    """(make default?, why, relative forgetting) from the general-set loss before and after."""
    relative = (after - before) / before
    change = (
        f"general-set loss {before:.3f} -> {after:.3f} ({relative:+.1%}; tolerated +{options.forgetting_threshold:.0%})"
    )
    if relative > options.forgetting_threshold:
        if options.force and options.make_default:
            return True, f"forced: {change}", relative
        return False, f"forgetting guard: {change}; saved but not made the default (force to override)", relative
    if not options.make_default:
        return False, f"make_default is off; {change}", relative
    return True, f"within the forgetting threshold: {change}", relative


def finetune_scenario(options: FinetuneOptions, platform: Platform | None = None) -> dict:
    """LoRA-tune the profile's LM on a scenario pack; saves lora/, manifest.json and loss.png; returns the manifest.

    Works on its own platform unless one is given. A given platform's LM is cast to `lm_dtype` and is
    left without the LoRA afterwards (apply it with `load_finetuned`).
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    _validate(options)
    pack = load_pack(options.scenario)
    out_dir = resolved_out_dir(options)
    out_dir.mkdir(parents=True, exist_ok=True)
    platform = platform or load_platform(options.profile)
    if platform.profile.name != options.profile:
        raise FinetuneError(
            f"the platform given has profile {platform.profile.name!r}, options say {options.profile!r}"
        )
    lm = platform.lm
    if isinstance(lm.model, PeftModel):
        raise FinetuneError("the platform's LM already has a LoRA adapter applied; fine-tune on a plain platform")
    torch.manual_seed(options.seed)
    lm.model.to(platform.training_dtype(options.lm_dtype).torch_dtype).requires_grad_(False).eval()
    tokenizer, device = lm.tokenizer, lm.device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stop_ids = lm.stop_token_ids
    max_tokens = min(options.max_tokens, getattr(lm.model.config, "max_position_embeddings", None) or 1 << 30)

    # data: conversations -> rows; index % 10 == 0 held out
    data_hash = hashlib.sha256(pack.finetune_data.read_bytes()).hexdigest()
    items = read_jsonl(pack, pack.finetune_data)[: options.max_items]
    obs_role = observation_role(tokenizer)
    converted = [chat_messages(item, obs_role) for item in items]
    media_skipped = sum(media for _, media in converted)
    train_conv = [m for i, (m, _) in enumerate(converted) if i % 10 != 0]
    test_conv = [m for i, (m, _) in enumerate(converted) if i % 10 == 0]
    train, train_stats = build_rows(tokenizer, train_conv, max_tokens, stop_ids)
    test, test_stats = build_rows(tokenizer, test_conv, max_tokens, stop_ids)
    general = {
        lang: build_rows(tokenizer, general_conversations(lang), max_tokens, stop_ids)[0] for lang in ("en", "zh")
    }
    if not train or not test:
        raise FinetuneError(
            f"scenario {options.scenario!r}: {len(train)} training and {len(test)} held-out rows; "
            "raise max_items or max_tokens"
        )

    def score(model) -> dict:
        batch = max(options.batch_size, SCORE_BATCH)
        held_out = mean_loss(model, test, pad_id, device, batch, "held-out")
        return {"scenario": held_out, **score_general(model, general, pad_id, device, batch)}

    lm_identity = part_identity(platform, "language_model")
    fingerprint = _fingerprint(options, data_hash, lm_identity)
    checkpoint = out_dir / "checkpoint.pt"
    saved, _ = trainer.read_checkpoint(checkpoint, fingerprint)
    before = saved["extra"] if saved else score(lm.model)  # the untouched LM, scored once per run
    torch.manual_seed(options.seed)
    lora = LoraConfig(r=options.lora_rank, lora_alpha=2 * options.lora_rank, lora_dropout=0.05,
                      target_modules=list(lm.lora_targets), task_type="CAUSAL_LM")  # fmt: skip
    with _quiet_peft():
        model = get_peft_model(lm.model, lora)  # LoRA B starts at zero: scores as the untouched LM
    lm.model = model
    try:
        model.train()
        state = trainer.train(
            Trainable.of_lora(model),
            trainer.epoch_batches(len(train), options.batch_size, options.epochs, options.seed),
            lambda batch: token_losses(model, [train[i] for i in batch], pad_id, device).mean(),
            TrainerOptions(lr=options.lr, checkpoint_every=options.checkpoint_every,
                           desc=f"finetune {options.scenario}"),
            checkpoint,
            fingerprint,
            initial_extra=lambda: before,
        )  # fmt: skip
        model.eval()
        after = score(model)
        made_default, reason, relative = _decide(options, before["general"], after["general"])
        metrics = {
            "scenario_loss_before": round(before["scenario"], 4),
            "scenario_loss_after": round(after["scenario"], 4),
            "general_loss_before": round(before["general"], 4),
            "general_loss_after": round(after["general"], 4),
            **{f"general_{lang}_loss_{when}": round(table[f"general_{lang}"], 4)
               for when, table in (("before", before), ("after", after)) for lang in general},
            "relative_forgetting": round(relative, 4),
            "train_conversations": len(train_conv),
            "held_out_conversations": len(test_conv),
            "train_rows": len(train),
            "held_out_rows": len(test),
            "assistant_turns_trained": train_stats.assistant_turns,
            "labelled_tokens_train": train_stats.labelled_tokens,
            "truncated_rows": train_stats.truncated_rows + test_stats.truncated_rows,
            "answers_too_long_skipped": train_stats.answers_too_long + test_stats.answers_too_long,
            "media_turns_skipped": media_skipped,
            "observation_role": obs_role,
            "max_tokens": max_tokens,
            "lm_dtype": dtype_name(model.dtype),
            "steps": state.step,
            "steps_this_run": state.steps_this_run,
            "train_seconds_this_run": round(state.seconds_this_run, 1),
            "checkpoint": state.note,
        }  # fmt: skip
        reason = _keep_previous_default(options, out_dir, made_default, reason)
        trainer.plot_losses(state.losses, before["scenario"], after["scenario"], out_dir / "loss.png",
                    f"LoRA {options.scenario} ({options.profile}); general {before['general']:.2f} -> "
                    f"{after['general']:.2f}")  # fmt: skip
        for stale in ("lora", "manifest.json"):
            target = out_dir / stale
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        model.save_pretrained(out_dir / "lora")
        manifest = {
            "scenario": options.scenario,
            "pack_version": pack.version,
            "profile": options.profile,
            "lm_id": lm_identity[0],
            "lm_hash": lm_identity[1],
            "lora": {"r": options.lora_rank, "alpha": 2 * options.lora_rank, "dropout": 0.05,
                     "target_modules": list(lm.lora_targets)},
            "options": json.loads(json.dumps(asdict(options), default=str)),
            "data": {"file": str(pack.finetune_data), "sha256": data_hash, "items": len(items), "split": SPLIT_RULE,
                     "labels": LABEL_BUILDER},
            "metrics": metrics,
            "made_default": made_default,
            "reason": reason,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": shlex.join(["polyglm", *sys.argv[1:]]) if sys.argv[0].endswith("polyglm") else "",
        }  # fmt: skip
        (out_dir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
        if made_default:
            set_default(options.profile, options.scenario, out_dir, options.finetune_root)
    finally:
        lm.model = model.unload()  # the platform's LM is plain again; load_finetuned applies the adapter
    return {
        **manifest,
        "out_dir": str(out_dir),
        "default_file": str(defaults_file(options.profile, options.finetune_root)),
    }


def _keep_previous_default(options: FinetuneOptions, out_dir: Path, made_default: bool, reason: str) -> str:
    """A rejected run must not overwrite the adapter that is the default: move that one aside first."""
    current = default_adapter(options.profile, options.scenario, options.finetune_root)
    if made_default or current is None or current.resolve() != out_dir.resolve():
        return reason
    keep = out_dir / "previous_default"
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir()
    for name in ("lora", "manifest.json", "loss.png"):
        if (out_dir / name).exists():
            shutil.move(out_dir / name, keep / name)
    set_default(options.profile, options.scenario, keep, options.finetune_root)
    return f"{reason}; the previous default was moved to {keep} and stays the default"


def finetune_cli_summary(result: dict) -> str:
    """A few lines for the terminal: data, steps, losses before/after, the guard's decision, where it is."""
    m = result["metrics"]

    def change(before: float, after: float) -> str:
        return f"{before:.3f} -> {after:.3f} ({(after - before) / before:+.1%})"

    threshold = result["options"]["forgetting_threshold"]
    return "\n".join([
        f"finetune {result['scenario']} (pack v{result['pack_version']}) on {result['profile']}: {result['lm_id']}",
        f"  data: {m['train_conversations']} train / {m['held_out_conversations']} held-out conversations, "
        f"{m['train_rows']} rows <= {m['max_tokens']} tokens, {m['assistant_turns_trained']} assistant turns trained"
        + (f", {m['media_turns_skipped']} media fields skipped" if m["media_turns_skipped"] else ""),
        f"  steps: {m['steps']} ({m['steps_this_run']} this run, {m['train_seconds_this_run']} s; checkpoint "
        f"{m['checkpoint']})",
        f"  held-out scenario loss: {change(m['scenario_loss_before'], m['scenario_loss_after'])}",
        f"  general-set loss:       {change(m['general_loss_before'], m['general_loss_after'])} "
        f"(tolerated +{threshold:.0%})",
        f"  default: {'yes' if result['made_default'] else 'NO'} - {result['reason']}",
        f"  adapter: {Path(result['out_dir']) / 'lora'}  (manifest.json, loss.png beside it)",
    ])  # fmt: skip
