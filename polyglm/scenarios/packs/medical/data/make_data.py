"""Build the medical pack's fine-tune and eval data: train.jsonl and eval.jsonl.

    .venv/bin/python polyglm/scenarios/packs/medical/data/make_data.py

Deterministic (SEED below): the same files on every run. The words live in YAML beside this script
(kb_dialogues.yaml: leaflet questions; tool_dialogues.yaml: symptom reports, medicine combinations,
refusals and jailbreak attempts; eval_items.yaml: the eval set). System prompts come from the loader,
quoted passages from the real chunker, and every tool call runs through the real tool, so each
observation, each triage level and each interaction the assistant reports is what the tool returns.
The triage level of every case is checked against the level written in the YAML: a rule change that
would, say, stop escalating chest pain with sweating fails this script instead of quietly
producing training data that under-escalates.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from polyglm.scenarios import datagen
from polyglm.scenarios.datagen import PackContext, assistant, conversation, observation, read_yaml, user

SEED = 20261128
TODAY = date(2026, 11, 28)
HERE = Path(__file__).resolve().parent
PACK = "medical"
MIN_TRAIN, MIN_EVAL = 200, 50
MIN_ESCALATE, MIN_ADVERSARIAL = 10, 8


@dataclass
class Context(PackContext):
    """Everything the conversation builders share: the pack (see datagen) plus this pack's banks."""

    kb: list[dict]  # kb_dialogues.yaml
    bank: dict[str, Any]  # tool_dialogues.yaml
    rules: dict[str, Any]  # triage_rules.json: rule id -> reason and advice per language


def joined(parts: list[str], lang: str) -> str:
    """Sentences joined the way each language writes them (Chinese needs no spaces)."""
    return ("" if lang == "zh" else " ").join(p.strip() for p in parts if p)


# ---------------------------------------------------------------- replies built from tool results


def triage_reply(ctx: Context, result: dict, lang: str, care: str | None) -> str:
    """Emergency first, then why, then what to do meanwhile, then the limits."""
    level = result["level"]
    top = [m for m in result["matched_rules"] if m["level"] == level]
    parts = []
    if any(m["id"] == "suicidal_thoughts" for m in top):
        parts.append(
            {
                "en": "Thank you for telling me; you deserve support right now.",
                "zh": "谢谢你愿意说出来，你值得被帮助。",
            }[lang]
        )
    parts.append(ctx.pick(ctx.bank["openers"][level][lang]))
    if top:
        reasons = ("; " if lang == "en" else "；").join(m["reason"] for m in top)
        parts.append({"en": f"Why: {reasons}.", "zh": f"原因：{reasons}。"}[lang])
    if level == "emergency":
        advice = joined([ctx.rules[m["id"]]["advice"][lang] for m in top], lang)
        parts.append(f"{ctx.bank['while_waiting'][lang]}{' ' if lang == 'en' else ''}{advice}")
    elif level == "urgent":  # the main rule's advice, then the leaflet's (several rules would repeat themselves)
        parts += [ctx.rules[top[0]["id"]]["advice"][lang], care or ""]
    else:
        if not care:
            raise SystemExit(f"self-care case without care text: {result}")
        parts.append(care)
    parts.append(ctx.pick(ctx.bank["limits"][lang]))
    return joined(parts, lang)


def display_name(drug: dict, lang: str) -> str:
    """The name the user typed, with the generic name after a brand or other spelling: "Advil (ibuprofen)"."""
    given, generic = drug["input"], drug["name"] if lang == "en" else drug["name_zh"]
    if given.lower() == generic.lower():
        return given[0].upper() + given[1:] if lang == "en" else given
    return f"{given} ({generic})" if lang == "en" else f"{given}（{generic}）"


def drug_reply(ctx: Context, result: dict, lang: str) -> str:
    names = {d["name"]: display_name(d, lang) for d in result["drugs"] if d["name"]}
    parts = []
    for hit in result["interactions"]:
        a, b = (names[n] for n in hit["drugs"])
        severity = ctx.bank["severity"][hit["severity"]][lang]
        parts.append(
            {
                "en": f"{a} + {b} ({severity}): {hit['effect']} {hit['advice']}",
                "zh": f"{a} + {b}（{severity}）：{hit['effect']}{hit['advice']}",
            }[lang]
        )
    for dup in result["duplicates"]:
        same = names[dup["same_medicine"]]
        listed = (" and " if lang == "en" else "和").join(dup["names"])
        parts.append(
            {
                "en": f"{listed} are the same medicine ({same}): {dup['advice']}",
                "zh": f"{listed}是同一种药（{same}）：{dup['advice']}",
            }[lang]
        )
    for unknown in result["unknown"]:
        parts.append(
            {
                "en": f"I couldn't find \"{unknown}\" in my table, so I can't say anything about it.",
                "zh": f"我的表里查不到“{unknown}”，所以无法判断。",
            }[lang]
        )
    if not result["interactions"] and not result["duplicates"]:
        listed = (" and " if lang == "en" else "和").join(names.values())
        parts.append(
            {
                "en": f"My table lists no interaction between {listed}.",
                "zh": f"我的表里没有查到{listed}之间的相互作用。",
            }[lang]
        )
    parts.append(result["disclaimer"])
    return joined(parts, lang)


# ---------------------------------------------------------------- conversation families


def kb_conversations(ctx: Context) -> Iterator[dict]:
    return datagen.kb_conversations(ctx, ctx.kb)


def triage_turns(ctx: Context, case: dict) -> list[dict]:
    lang = case["lang"]
    args = {"symptoms": case["symptoms"], "age_years": case["age"], "duration_hours": case["hours"]}
    call = ctx.call("triage", args)
    if call.result["level"] != case["level"]:
        raise SystemExit(f"triage{args} -> {call.result['level']}, the bank expects {case['level']}")
    return [
        assistant(ctx.pick(ctx.bank["calling"]["triage"][lang]), [call]),
        observation(call),
        assistant(triage_reply(ctx, call.result, lang, case.get("care"))),
    ]


def triage_conversations(ctx: Context) -> Iterator[dict]:
    for case in ctx.bank["triage"]:
        yield conversation(case["lang"], [ctx.system(case["lang"]), user(case["text"]), *triage_turns(ctx, case)])


def ask_first_conversations(ctx: Context) -> Iterator[dict]:
    for case in ctx.bank["ask_first"]:
        lang = case["lang"]
        yield conversation(
            lang,
            [
                ctx.system(lang),
                user(case["first"]),
                assistant(case["ask"]),
                user(case["reply"]),
                *triage_turns(ctx, case),
            ],
        )


def drug_conversations(ctx: Context) -> Iterator[dict]:
    for case in ctx.bank["drugs"]:
        lang = case["lang"]
        call = ctx.call("drug_interactions", {"drugs": case["drugs"]})
        yield conversation(
            lang,
            [
                ctx.system(lang),
                user(case["text"]),
                assistant(ctx.pick(ctx.bank["calling"]["drug_interactions"][lang]), [call]),
                observation(call),
                assistant(drug_reply(ctx, call.result, lang)),
            ],
        )


def fixed_conversations(ctx: Context) -> Iterator[dict]:
    for item in ctx.bank["fixed"]:
        lang = item["lang"]
        messages = [ctx.system(lang)]
        users_turn = True  # turns alternate user / assistant; a {call: ...} turn is the assistant calling a tool
        for turn in item["turns"]:
            if isinstance(turn, dict):
                call = ctx.call(turn["call"]["name"], turn["call"]["arguments"])
                if call.result.get("level", turn.get("level")) != turn.get("level"):
                    raise SystemExit(f"{turn['call']} -> {call.result['level']}, the bank expects {turn.get('level')}")
                messages += [assistant(ctx.pick(ctx.bank["calling"][call.name][lang]), [call]), observation(call)]
            else:
                messages.append(user(turn) if users_turn else assistant(turn))
                users_turn = not users_turn
        yield conversation(lang, messages)


FAMILIES = [kb_conversations, triage_conversations, ask_first_conversations, drug_conversations, fixed_conversations]


def build_train(ctx: Context) -> list[dict]:
    return datagen.train_set(ctx, FAMILIES, "med-train")


# ---------------------------------------------------------------- eval set


def check_triage(item_id: str, raw: dict, call: dict, result: dict) -> None:
    """Stop when triage gives another level than the item states, or does not escalate a must_escalate item."""
    if "level" in raw and result.get("level") != raw["level"]:
        raise SystemExit(f"eval {item_id}: triage says {result.get('level')}, the item expects {raw['level']}")
    if raw.get("must_escalate") and call["name"] == "triage" and result["level"] != "emergency":
        raise SystemExit(f"eval {item_id}: must_escalate but triage says {result['level']}")


def build_eval(ctx: Context, train: list[dict]) -> list[dict]:
    items = datagen.eval_set(ctx, "med-eval", read_yaml(HERE / "eval_items.yaml"), train, check_call=check_triage)
    escalate = [
        i for i in items if i["must_escalate"] and any(c["name"] == "triage" for c in i.get("expected_tool_calls", []))
    ]
    adversarial = [i for i in items if i["adversarial"]]
    if len(escalate) < MIN_ESCALATE or len(adversarial) < MIN_ADVERSARIAL:
        raise SystemExit(
            f"eval has {len(escalate)} red-flag and {len(adversarial)} adversarial items; "
            f"need {MIN_ESCALATE} / {MIN_ADVERSARIAL}"
        )
    return items


# ---------------------------------------------------------------- main


def make_context(rng: random.Random) -> Context:
    banks = {"kb": read_yaml(HERE / "kb_dialogues.yaml"), "bank": read_yaml(HERE / "tool_dialogues.yaml")}
    rules = json.loads((HERE / "triage_rules.json").read_text(encoding="utf-8"))["rules"]
    return Context.for_pack(PACK, HERE, TODAY, rng, rules=rules, **banks)


def main() -> int:
    rng = random.Random(SEED)
    with datagen.throwaway_cache():  # the tools keep no state, but never touch the user's cache
        ctx = make_context(rng)
        train = build_train(ctx)
        evals = build_eval(ctx, train)
    written = datagen.write_train_and_eval(HERE, train, evals, MIN_TRAIN, MIN_EVAL)
    escalate = sum(i["must_escalate"] for i in evals)
    adversarial = sum(i["adversarial"] for i in evals)
    print(f"{written} ({escalate} must_escalate, {adversarial} adversarial)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
