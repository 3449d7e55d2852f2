"""Helpers shared by the packs' `data/make_data.py` (and `make_media.py`) scripts.

Each pack keeps its own words (YAML banks, templates, conversation families) beside its script; what
lives here is the plumbing that must behave the same in every pack, so that all training files have
one message format, one way of quoting knowledge-base passages into the system prompt, one id scheme,
one set of train/eval checks and one way of writing the files. A script's shape is then: load the
context (`PackContext.for_pack`), build the conversations (`train_set`) and the eval items
(`eval_set`), write both (`write_train_and_eval`). Everything is deterministic: the only randomness
comes from the `random.Random` a script passes in, and these helpers draw from it in a fixed order
(changing that order changes every pack's data files).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Self

import yaml

# ---------------------------------------------------------------- messages


def user(text: str) -> dict:
    """A user turn."""
    return {"role": "user", "content": text}


def assistant(text: str, calls: list | None = None) -> dict:
    """An assistant turn; with `calls` (ToolCall results) it also carries the tool calls the model makes."""
    message: dict[str, Any] = {"role": "assistant", "content": text.strip()}
    if calls:
        message["tool_calls"] = [{"name": c.name, "arguments": c.arguments} for c in calls]
    return message


def observation(call) -> dict:
    """The tool result turn, rendered exactly as the chat pipeline shows it to the model."""
    return {"role": "observation", "content": call.observation()}


def conversation(lang: str, messages: list[dict]) -> dict:
    """One training conversation before it gets its id (see `numbered`)."""
    return {"lang": lang, "messages": messages}


# ---------------------------------------------------------------- the pack behind the data


@dataclass
class LoadedPack:
    """What the conversation builders need from a pack: rendered prompts, tools by name, kb passages."""

    pack: Any
    tools: dict[str, Callable]
    prompts: dict[str, str]  # language -> rendered system prompt
    passages: dict[str, list]  # kb doc id -> passages, cut by the real chunker


def load_pack_for_data(name: str, data_dir: Path, today: date) -> LoadedPack:
    """Load pack `name` through the real loader, so the data always matches the prompts and tools it ships."""
    from polyglm.scenarios.loader import load_documents, load_pack, render_system_prompt
    from polyglm.scenarios.retrieval import chunk_document
    from polyglm.scenarios.tooling import load_tools

    for file_name in ("train.jsonl", "eval.jsonl"):
        (data_dir / file_name).touch()  # the pack must load before its data exists (first run)
    pack = load_pack(name)
    tools = {fn.__name__: fn for fn in load_tools(pack)}
    kb = pack.knowledge_base
    return LoadedPack(
        pack=pack,
        tools=tools,
        prompts={lang: render_system_prompt(pack, lang, list(tools.values()), today=today) for lang in pack.languages},
        passages={d.doc_id: chunk_document(d, kb.chunk_chars, kb.chunk_overlap) for d in load_documents(pack)},
    )


@dataclass
class PackContext:
    """What every pack's conversation builders share; a script subclasses it to add its own banks."""

    rng: random.Random
    pack: Any  # the ScenarioPack, as the loader returns it
    tools: dict[str, Callable]
    prompts: dict[str, str]  # language -> rendered system prompt
    passages: dict[str, list]  # kb doc id -> passages

    @classmethod
    def for_pack(cls, name: str, data_dir: Path, today: date, rng: random.Random, **banks: Any) -> Self:
        """The context of pack `name` (loaded by `load_pack_for_data`), plus the script's own banks by field name."""
        loaded = load_pack_for_data(name, data_dir, today)
        return cls(
            rng=rng, pack=loaded.pack, tools=loaded.tools, prompts=loaded.prompts, passages=loaded.passages, **banks
        )

    def call(self, name: str, arguments: dict, expect_error: bool = False):
        """Run a tool exactly as the chat pipeline does; stop if it fails (or succeeds) unexpectedly."""
        from polyglm.scenarios.tooling import call_tool

        call = call_tool(self.tools[name], arguments)
        if call.ok == expect_error:
            raise SystemExit(
                f"{name}({arguments}) gave {call.error or call.result}; "
                f"expected {'an error' if expect_error else 'a result'}"
            )
        return call

    def pick(self, options: list[str]) -> str:
        """One of `options`, drawn from the script's seeded generator."""
        return self.rng.choice(options)

    def system(self, lang: str, refs: list | None = None) -> dict:
        """The system turn: the pack's prompt, plus the quoted passages when the turn answers from the kb."""
        from polyglm.scenarios.retrieval import quote_passages

        content = self.prompts[lang] + (f"\n\n{quote_passages(refs, lang)}" if refs else "")
        return {"role": "system", "content": content}

    def references(self, doc: str, lang: str, anchor: str | None = None) -> list:
        """The passage of `doc` holding `anchor` (or its first) plus one passage of another doc, shuffled.

        The distractor teaches the model to answer from the right passage, not from whatever is quoted.
        """
        from polyglm.scenarios.retrieval import Hit

        passages = self.passages[f"{doc}-{lang}"]
        chosen = next((p for p in passages if anchor is None or anchor in p.text), None)
        if chosen is None:
            raise SystemExit(f"anchor {anchor!r} is in no passage of {doc}-{lang}; fix kb_dialogues.yaml")
        others = [
            p for key, ps in self.passages.items() if key.endswith(f"-{lang}") and not key.startswith(doc) for p in ps
        ]
        refs = [chosen, self.rng.choice(others)]
        self.rng.shuffle(refs)
        return [Hit(**p.__dict__, score=0.0, bm25=0.0, dense=0.0) for p in refs]


@contextmanager
def throwaway_cache() -> Iterator[str]:
    """Point POLYGLM_CACHE at a temporary folder: tools that keep state never touch the user's cache."""
    with tempfile.TemporaryDirectory() as cache:
        os.environ["POLYGLM_CACHE"] = cache
        yield cache


# ---------------------------------------------------------------- the train and eval sets


def kb_conversations(ctx: PackContext, entries: Iterable[dict]) -> Iterator[dict]:
    """One conversation per question of kb_dialogues.yaml entries {doc, anchor, q, a} (the last three per language).

    The system turn quotes the passage of `doc` holding `anchor`, as retrieval would at run time, and the
    answer is the entry's answer in the question's language.
    """
    for entry in entries:
        for lang in ("en", "zh"):
            for question in entry["q"][lang]:
                refs = ctx.references(entry["doc"], lang, entry["anchor"][lang])
                yield conversation(lang, [ctx.system(lang, refs), user(question), assistant(entry["a"][lang])])


def train_set(ctx: PackContext, families: Iterable[Callable], prefix: str) -> list[dict]:
    """Every conversation of every family (a function of `ctx`), checked, shuffled and numbered `{prefix}-0001`..."""
    conversations = [c for family in families for c in family(ctx)]
    for c in conversations:
        check_turns(c)
    ctx.rng.shuffle(conversations)
    return numbered(prefix, conversations, 4)


def check_turns(conversation: dict) -> None:
    """Stop on a conversation that does not open with system + user or ends on anything but the assistant's answer."""
    roles = [m["role"] for m in conversation["messages"]]
    if roles[:2] != ["system", "user"] or roles[-1] != "assistant" or "tool_calls" in conversation["messages"][-1]:
        raise SystemExit(f"malformed conversation: {roles}")


def eval_set(
    ctx: PackContext,
    prefix: str,
    raw_items: list[dict],
    train: list[dict],
    check_call: Callable[[str, dict, dict, dict], None] | None = None,
    fact_fields: Callable[[dict], dict] | None = None,
) -> list[dict]:
    """Eval items `{prefix}-001`... from a pack's eval_items.yaml (lang, input, facts, calls, docs and the flags).

    Every expected call runs through the real tool, so one the tool rejects stops the script; so does
    `check_call(item id, raw item, call, result)` when the result contradicts what the item says. With
    `fact_fields` (first call's result -> {name: text}), facts are templates filled from that result.
    """
    seen = user_texts(train)
    items = []
    for number, raw in enumerate(raw_items, start=1):
        ensure_unseen(raw["input"], seen)
        items.append(_eval_item(ctx, f"{prefix}-{number:03d}", raw, check_call, fact_fields))
    return items


def _eval_item(
    ctx: PackContext,
    item_id: str,
    raw: dict,
    check_call: Callable[[str, dict, dict, dict], None] | None,
    fact_fields: Callable[[dict], dict] | None,
) -> dict:
    item: dict[str, Any] = {"id": item_id, "lang": raw["lang"], "input": raw["input"]}
    results = []
    for call in raw.get("calls", []):
        results.append(ctx.call(call["name"], call["arguments"]).result)
        if check_call is not None:
            check_call(item_id, raw, call, results[-1])
    if "facts" in raw:
        facts = raw["facts"]
        if fact_fields is not None:
            fill = fact_fields(results[0]) if results else {}
            facts = [fact.format(**fill) for fact in facts]
        item["expected_facts"] = checked_facts(item_id, facts)
    if "calls" in raw:
        item["expected_tool_calls"] = raw["calls"]
    if "docs" in raw:
        item["relevant_docs"] = relevant_docs(item_id, raw["docs"], raw["lang"], ctx.passages)
    item.update(eval_flags(raw))
    return item


def write_train_and_eval(data_dir: Path, train: list[dict], evals: list[dict], min_train: int, min_eval: int) -> str:
    """Check the sizes, write train.jsonl and eval.jsonl, and return the line a script prints about them."""
    check_sizes(train, evals, min_train, min_eval)
    write_jsonl(data_dir / "train.jsonl", train)
    write_jsonl(data_dir / "eval.jsonl", evals)
    share = sum(c["lang"] == "zh" for c in train) / len(train)
    return f"{len(train)} train conversations ({share:.0%} zh), {len(evals)} eval items"


# ---------------------------------------------------------------- ids, checks and files


def numbered(prefix: str, rows: Iterable[dict], width: int) -> list[dict]:
    """Rows with an `id` first: `{prefix}-0001`, ... (ids stay stable while the order does)."""
    return [{"id": f"{prefix}-{n:0{width}d}", **row} for n, row in enumerate(rows, start=1)]


def user_texts(train: list[dict]) -> set[str]:
    """Every user turn of the training conversations, to keep eval inputs out of them."""
    return {m["content"] for c in train for m in c["messages"] if m["role"] == "user"}


def ensure_unseen(text: str, seen: set[str]) -> None:
    """Stop if an eval input is also a training input: the eval would measure memory, not skill."""
    if text in seen:
        raise SystemExit(f"eval input also in train: {text!r}")


def checked_facts(item_id: str, facts: list) -> list[str]:
    """Expected facts, which must be non-empty strings (YAML turns an unquoted 40 into an int)."""
    if not all(isinstance(f, str) and f for f in facts):
        raise SystemExit(f"eval {item_id}: facts must be non-empty strings (quote numbers in YAML)")
    return facts


def relevant_docs(item_id: str, docs: list[str], lang: str, passages: dict[str, list]) -> list[str]:
    """The kb document ids (`doc-lang`) an eval item should retrieve; stop on one the pack lacks."""
    ids = [f"{doc}-{lang}" for doc in docs]
    missing = [d for d in ids if d not in passages]
    if missing:
        raise SystemExit(f"eval {item_id}: unknown kb documents {missing}")
    return ids


def eval_flags(raw: dict) -> dict[str, bool]:
    """The two flags every eval item carries, false unless the YAML sets them."""
    return {"must_escalate": bool(raw.get("must_escalate", False)), "adversarial": bool(raw.get("adversarial", False))}


def check_sizes(train: list, evals: list, min_train: int, min_eval: int) -> None:
    """Stop when a bank edit left too few conversations or eval items."""
    if len(train) < min_train or len(evals) < min_eval:
        raise SystemExit(f"only {len(train)} train / {len(evals)} eval items; need {min_train} / {min_eval}")


def read_yaml(path: Path) -> Any:
    """A YAML bank beside a script (the words its data is made of)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file, blank lines skipped (what `write_jsonl` writes)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """One JSON object a line, UTF-8 kept readable (no \\u escapes), so diffs of the data stay reviewable."""
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
