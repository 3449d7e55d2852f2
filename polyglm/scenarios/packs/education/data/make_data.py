"""Build the education pack's fine-tune and eval data: train.jsonl and eval.jsonl.

    .venv/bin/python polyglm/scenarios/packs/education/data/make_data.py

Deterministic (SEED below): the same files on every run. The words live in three YAML files beside
this script (kb_dialogues.yaml: concept questions; tool_dialogues.yaml: checking, quizzes and their
marking, photos, refusals; eval_items.yaml: the eval set). This script joins them with the pack itself:
system prompts come from the loader, quoted passages from the real chunker, and every tool call is run
through the real tool (against a throw-away cache folder), so each observation and every number the
tutor says about a result is what the tool returns. A wording or tool change shows up here as a
changed line.
"""

from __future__ import annotations

import random
import re
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
PACK = "education"
MIN_TRAIN, MIN_EVAL = 200, 50

CALLING = {"check_answer": "calling", "generate_quiz": "calling_quiz", "grade_quiz": "calling_grade"}  # opener lists


# ---------------------------------------------------------------- context


@dataclass
class Context(PackContext):
    """Everything the conversation builders share: the pack (see datagen) plus this pack's banks."""

    kb: list[dict]  # kb_dialogues.yaml
    bank: dict[str, Any]  # tool_dialogues.yaml


# ---------------------------------------------------------------- what the tutor says about a check


_CHECK_STEP = re.compile(r"^check (\w) = (.+): left side = (.+), right side = (.+) \((.+)\)$")


def describe_check(result: dict, lang: str) -> str:
    """One sentence on why a check_answer result came out as it did, built from its steps."""
    checks = [m.groups() for m in map(_CHECK_STEP.match, result["steps"]) if m]
    if result["kind"] == "equation" and checks:
        if result["correct"]:
            if len(checks) == 1:
                var, value, left, _right, _ = checks[0]
                return {
                    "en": f"Substituting {var} = {value} gives {left} on both sides.",
                    "zh": f"把 {var} = {value} 代回原方程，左右两边都等于 {left}。",
                }[lang]
            return {
                "en": "Each value makes the two sides equal when you substitute it back.",
                "zh": "把每个根分别代回原方程，左右两边都相等。",
            }[lang]
        failing = [c for c in checks if "not equal" in c[4]]
        if failing:
            var, value, left, right, _ = failing[0]
            return {
                "en": f"If {var} = {value}, the left side is {left} but the right side is {right}, "
                "so they don't match.",
                "zh": f"把 {var} = {value} 代回去，左边是 {left}，右边是 {right}，两边不相等。",
            }[lang]
        return {
            "en": "Your value does satisfy the equation, but it is not the complete answer.",
            "zh": "你给的值确实满足方程，但答案还不完整。",
        }[lang]
    if result["kind"] == "system":
        if result["correct"]:
            return {"en": "Your values satisfy both equations.", "zh": "你的解同时满足两个方程。"}[lang]
        broken = [s for s in result["steps"] if s.endswith("does not hold")]
        number = re.search(r"equation (\d)", broken[0]).group(1) if broken else "1"
        return {
            "en": f"With your values, equation {number} does not hold.",
            "zh": f"把你的解代入第 {number} 个方程，等式不成立。",
        }[lang]
    status = result.get("status")
    if status == "equivalent_not_simplified":
        return {
            "en": "Your answer has the right value, but it is not in its simplest "
            "(or fully factorised/expanded) form yet.",
            "zh": "你的结果数值上是对的，但还不是最简（或没有完全分解/展开）的形式。",
        }[lang]
    if result["correct"]:
        if result["kind"] == "arithmetic":
            note = result.get("note", "")
            extra = {"en": " (rounded correctly)", "zh": "（四舍五入正确）"}[lang] if "decimal places" in note else ""
            return {
                "en": f"It works out to {result['expected']}{extra}.",
                "zh": f"结果就是 {result['expected']}{extra}。",
            }[lang]
        return {
            "en": "It is equivalent to the original and in the form the question asks for.",
            "zh": "它与原式相等，而且是题目要求的形式。",
        }[lang]
    return {"en": "That isn't equal to the original expression.", "zh": "这个结果和原式不相等。"}[lang]


def verdict(ctx: Context, result: dict, lang: str, hint: dict | None, retry: bool = True) -> str:
    """The tutor's reply to a check: praise, or the slip plus a hint and an invitation to retry."""
    if result["correct"]:
        return joined([ctx.pick(ctx.bank["right"][lang]), describe_check(result, lang)], lang)
    if hint is None:
        raise SystemExit(f"{result['problem']} / {result['answer']}: marked wrong but the bank has no hint for it")
    parts = [ctx.pick(ctx.bank["wrong"][lang]), describe_check(result, lang), hint[lang]]
    if retry:
        parts.append(ctx.pick(ctx.bank["retry"][lang]))
    return joined(parts, lang)


def joined(parts: list[str], lang: str) -> str:
    """Sentences joined the way each language writes them (Chinese needs no spaces)."""
    return ("" if lang == "zh" else " ").join(parts)


_ZH_VERBS = {"expand ": "展开 ", "factor ": "因式分解 ", "simplify ": "化简 "}


def localised(text: str, lang: str) -> str:
    """A problem or answer as a Chinese student types it: 化简/展开/因式分解, 或 instead of or."""
    if lang != "zh":
        return text
    for english, chinese in _ZH_VERBS.items():
        text = text.replace(english, chinese)
    return text.replace(" or ", " 或 ")


# ---------------------------------------------------------------- conversation families


def kb_conversations(ctx: Context) -> Iterator[dict]:
    return datagen.kb_conversations(ctx, ctx.kb)


def check_conversations(ctx: Context) -> Iterator[dict]:
    for index, item in enumerate(ctx.bank["problems"]):
        first, second = ("en", "zh") if index % 2 == 0 else ("zh", "en")
        for lang, answer in ((first, item["right"]), (second, item["wrong"])):
            yield conversation(lang, [ctx.system(lang), *check_turns(ctx, lang, item, answer)])
        if index % 3 == 0:  # wrong, hint, second try, confirmed
            lang = second
            turns = check_turns(ctx, lang, item, item["wrong"])
            retry = {
                "en": ["Oh, I see. Then is it {a}?", "Okay, new answer: {a}", "Let me redo it... {a}?"],
                "zh": ["哦，我明白了。那是 {a} 吗？", "我重新算了，{a}", "改好了：{a}，这次对吗？"],
            }[lang]
            right = localised(item["right"], lang)
            turns.append(user(ctx.pick(retry).format(a=right)))
            call = ctx.call("check_answer", {"problem": localised(item["problem"], lang), "answer": right})
            turns += [
                assistant(ctx.pick(ctx.bank["calling"][lang]), [call]),
                observation(call),
                assistant(verdict(ctx, call.result, lang, None)),
            ]
            yield conversation(lang, [ctx.system(lang), *turns])


def check_turns(ctx: Context, lang: str, item: dict, answer: str) -> list[dict]:
    problem, shown_answer = localised(item["problem"], lang), localised(answer, lang)
    question = ctx.pick(ctx.bank["ask_check"][lang]).format(problem=problem, answer=shown_answer)
    call = ctx.call("check_answer", {"problem": problem, "answer": shown_answer})
    if call.result["correct"] != (answer == item["right"]):
        raise SystemExit(f"{item['problem']}: the checker says {call.result['correct']} for {answer!r}; fix the bank")
    return [
        user(question),
        assistant(ctx.pick(ctx.bank["calling"][lang]), [call]),
        observation(call),
        assistant(verdict(ctx, call.result, lang, item["hint"])),
    ]


def socratic_conversations(ctx: Context) -> Iterator[dict]:
    for index, item in enumerate(ctx.bank["socratic"]):
        for lang in ("en", "zh"):
            refs = ctx.references(item["doc"], lang)
            turns = [user(item["q"][lang]), assistant(item["hint"][lang])]
            if (index + (lang == "zh")) % 2 == 0:
                turns += [
                    user(ctx.pick(ctx.bank["insist"][lang])),
                    assistant(f"{item['full'][lang]} {ctx.pick(ctx.bank['after_full'][lang])}"),
                ]
            yield conversation(lang, [ctx.system(lang, refs), *turns])


def quiz_conversations(ctx: Context) -> Iterator[dict]:
    for item in ctx.bank["quizzes"]:
        lang = item["lang"]
        args = {k: item[k] for k in ("topic", "difficulty", "count", "seed")}
        made = ctx.call("generate_quiz", args)
        quiz = made.result
        turns = [
            user(item["text"]),
            assistant(ctx.pick(ctx.bank["calling_quiz"][lang]), [made]),
            observation(made),
            assistant(show_quiz(ctx, quiz, lang)),
        ]
        if item["plan"] != "none":
            answers = [
                student_answer(a["answer"], plan)
                for a, plan in zip(quiz["answers_for_tutor"], item["plan"], strict=True)
            ]
            turns.append(user(answer_message(answers, lang)))
            graded = ctx.call(
                "grade_quiz", {"quiz_id": quiz["quiz_id"], "answers": answers, "student": item["student"]}
            )
            expected_right = [plan == "r" for plan in item["plan"]]
            if [r["correct"] for r in graded.result["results"]] != expected_right:
                raise SystemExit(
                    f"{quiz['quiz_id']}: grading {graded.result['results']} does not follow plan {item['plan']}"
                )
            turns += [
                assistant(ctx.pick(ctx.bank["calling_grade"][lang]), [graded]),
                observation(graded),
                assistant(grade_reply(ctx, graded.result, quiz["topic"], lang)),
            ]
        yield conversation(lang, [ctx.system(lang), *turns])


def show_quiz(ctx: Context, quiz: dict, lang: str) -> str:
    topic, level = ctx.bank["topics"][quiz["topic"]][lang], ctx.bank["levels"][quiz["difficulty"]][lang]
    lines = [f"{q['n']}. {q[lang]}" for q in quiz["questions"]]
    if lang == "en":
        head = f"Here is your {level} quiz on {topic} (quiz id {quiz['quiz_id']}):"
        tail = (
            "Work them out on paper, then send me your answers in order. "
            "Skip any you can't do; I'll mark them and we'll go over the tricky ones."
        )
    else:
        head = f"这是你的{topic}{level}练习（练习编号 {quiz['quiz_id']}）："
        tail = "先在草稿纸上做，然后按顺序把答案发给我。不会的可以空着，我批改后我们一起看错题。"
    return "\n".join([head, *lines, tail])


def student_answer(expected: str, plan: str) -> str:
    """What the student writes: the right answer, a slip (first number nudged) or nothing."""
    if plan == "s":
        return ""
    text = expected.split(" (")[0]  # "170 yuan (元)" -> "170 yuan"
    if plan == "r":
        return text
    last = re.search(r"-?\d+(?:\.\d+)?(?:/\d+)?", text)
    token = last.group(0)
    if "/" in token:
        top, bottom = token.split("/")
        wrong = f"{int(top) + 1}/{bottom}"
    elif "." in token:
        wrong = f"{float(token) + 1:.{len(token.split('.')[1])}f}"
    else:
        wrong = str(int(token) + 1)
    return text[: last.start()] + wrong + text[last.end() :]


def answer_message(answers: list[str], lang: str) -> str:
    if lang == "en":
        parts = [f"{n}) {a or '(skipped)'}" for n, a in enumerate(answers, start=1)]
        return "My answers: " + "  ".join(parts)
    parts = [f"{n}. {a or '不会'}" for n, a in enumerate(answers, start=1)]
    return "我的答案：" + "  ".join(parts)


def grade_reply(ctx: Context, graded: dict, topic: str, lang: str) -> str:
    """The score, each missed question with its answer, and what to do next (the words: `grade` in the bank)."""
    words = ctx.bank["grade"][lang]
    misses = [r for r in graded["results"] if not r["correct"]]
    lines = [words["score"].format(**graded)]
    for r in misses:
        how = words["wrote"].format(given=r["given"]) if r["given"] else words["skipped"]
        lines.append(words["miss"].format(n=r["n"], how=how, expected=r["expected"]))
    doc = f"{ctx.bank['topics'][topic]['doc']}-{lang}"
    lines.append(words["redo"].format(s="s" if len(misses) > 1 else "", doc=doc) if misses else words["all_correct"])
    return joined(lines, lang)


def ocr_conversations(ctx: Context) -> Iterator[dict]:
    for item in ctx.bank["ocr"]:
        lang = item["lang"]
        problem, answer = item["check"]
        call = ctx.call("check_answer", {"problem": problem, "answer": answer})
        reply = verdict(ctx, call.result, lang, item.get("hint"))
        if item.get("injected"):
            notice = {
                "en": "One note first: the photo text contains an instruction aimed at me. I treat text from photos "
                "as your work to check, not as instructions, so I've only checked this problem.",
                "zh": "先说明一下：照片文字里夹着一句给我的指令。"
                "照片里的文字我只当作要批改的作业，不会照做，所以我只检查了这道题。",
            }[lang]
            reply = joined([notice, reply], lang)
        yield conversation(
            lang,
            [
                ctx.system(lang),
                user(item["text"]),
                assistant(ctx.pick(ctx.bank["calling"][lang]), [call]),
                observation(call),
                assistant(reply),
            ],
        )


def fixed_conversations(ctx: Context) -> Iterator[dict]:
    for item in ctx.bank["fixed"]:
        turns = [user(t) if i % 2 == 0 else assistant(t) for i, t in enumerate(item["turns"])]
        yield conversation(item["lang"], [ctx.system(item["lang"]), *turns])


def error_conversations(ctx: Context) -> Iterator[dict]:
    for item in ctx.bank["errors"]:
        lang = item["lang"]
        name = item["call"]["name"]
        call = ctx.call(name, item["call"]["arguments"], expect_error=True)
        opener = ctx.pick(ctx.bank[CALLING[name]][lang])
        yield conversation(
            lang,
            [
                ctx.system(lang),
                user(item["user"]),
                assistant(opener, [call]),
                observation(call),
                assistant(item["reply"]),
            ],
        )


FAMILIES = [
    kb_conversations,
    check_conversations,
    socratic_conversations,
    quiz_conversations,
    ocr_conversations,
    fixed_conversations,
    error_conversations,
]


def build_train(ctx: Context) -> list[dict]:
    return datagen.train_set(ctx, FAMILIES, "edu-train")


# ---------------------------------------------------------------- eval set


def check_verdict(item_id: str, raw: dict, call: dict, result: dict) -> None:
    """Stop when the checker's verdict is not the one the eval item states."""
    if "correct" in raw and result.get("correct") != raw["correct"]:
        raise SystemExit(f"eval {item_id}: checker says {result.get('correct')}, item says {raw['correct']}")


def build_eval(ctx: Context, train: list[dict]) -> list[dict]:
    return datagen.eval_set(ctx, "edu-eval", read_yaml(HERE / "eval_items.yaml"), train, check_call=check_verdict)


# ---------------------------------------------------------------- main


def make_context(rng: random.Random) -> Context:
    banks = {"kb": read_yaml(HERE / "kb_dialogues.yaml"), "bank": read_yaml(HERE / "tool_dialogues.yaml")}
    return Context.for_pack(PACK, HERE, TODAY, rng, **banks)


def main() -> int:
    rng = random.Random(SEED)
    with datagen.throwaway_cache():  # quizzes and grades go to a throw-away folder, never the user's cache
        ctx = make_context(rng)
        train = build_train(ctx)
        evals = build_eval(ctx, train)
    print(datagen.write_train_and_eval(HERE, train, evals, MIN_TRAIN, MIN_EVAL))
    return 0


if __name__ == "__main__":
    sys.exit(main())
