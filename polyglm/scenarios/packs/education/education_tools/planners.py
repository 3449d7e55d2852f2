"""The planners: rules that read the student's own message and decide tool calls before generation.

A small model may never emit a tool call, so a problem with the student's answer, a request for practice
questions and answers to a stored quiz are recognised here and checked, generated or graded by the tools.
"""

from __future__ import annotations

import re

from polyglm.scenarios.tooling import PlannedCall, planner

from .questions import TOPIC_ALIASES, TOPICS
from .quizzes import QUIZ_ID

# A maths span: numbers, x/y/z, operators, brackets; the words around it are the student's.
# "of" joins a percentage to its base ("20% of 250"), as check_answer reads it.
_MATH_TOKEN = re.compile(r"\d+(?:\.\d+)?|[xyz]|[-+*/^()=÷×%]|\bof\b|\s+")
_ASSIGNMENT = re.compile(r"^[xyz]\s*=\s*-?\d+(?:[./]\d+)?$")
_ANSWER_CUE = re.compile(
    r"(?:i got|i wrote|i think it'?s|my answer is|is it|i have|i said|answer:|equal to|equals|我得|我算出|"
    r"我算的是|我算的|我写的是|我写|答案是|得到)\s*[:：]?\s*",
    re.IGNORECASE,
)
_OPERAND_END, _OPERAND_START = re.compile(r"[\d xyz)]$"), re.compile(r"^[\dxyz(]")
_MODE_WORDS = (("factor", r"factori[sz]e|factor|因式分解|分解因式"), ("expand", r"expand|展开"),
               ("simplify", r"simplify|化简"))  # fmt: skip
_QUIZ_REQUEST = re.compile(r"quiz|questions?|practice|题", re.IGNORECASE)
_DIFFICULTY_WORDS = (("hard", r"hard|difficult|难"), ("medium", r"medium|中等|一般"),
                     ("easy", r"easy|simple|简单|基础"))  # fmt: skip
_QUIZ_ID_IN_TEXT = re.compile(QUIZ_ID.pattern.removeprefix("^").removesuffix("$"))  # a quiz id inside a message
# "1) 5 2) 7", "1. x = 2", "1、5 2、跳过": an item number after a space (a decimal point is not one)
_NUMBERED = re.compile(r"(?:^|\s)(\d{1,2})\s*(?:[)、]|\.(?!\d))\s*")
# "5、跳过、7", "5, 12, 7": answers listed without numbers (the comma in 1,000 is not a separator)
_LISTED = re.compile(r"\s*(?:[、;；，]|,(?!\d{3}\b))\s*")
# what a student writes before the answers themselves: "answers: ", "my answers are", "的答案：", "答案是"
_ANSWERS_CUE = re.compile(
    r"^\s*(?:for\s+(?:me|myself|us)\b)?\s*(?:(?:my|the|his|her|their)\s+)?(?:answers?|responses?)?\s*"
    r"(?:are|is|=)?\s*[:：]?\s*"
    r"(?:(?:我|他|她)?的)?(?:答案|回答)?\s*(?:是|为|如下)?\s*[:：]?\s*",
    re.IGNORECASE,
)
_STUDENT_CUE = re.compile(
    r"[.。,，;；]?\s*(?:(?:i'?m|i am|my name is|for)\s+(?!(?:me|myself|us)\b)|(?:我叫|我是)\s*)"
    r"([^\s,.。，;；:：]{1,40})",
    re.IGNORECASE,
)
_SKIPPED = re.compile(r"(?:skipped|skip|blank|left blank|no answer|not answered|跳过|没做|空着|空白|不会)$", re.I)
_ZH_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}


def _math_spans(text: str) -> list[tuple[int, str]]:
    """(position, text) of each maths span; working written on one line ("8 4x = 12") is cut where two
    operands meet with only a space between them."""
    spans: list[tuple[int, str]] = []
    position, current, start = 0, "", 0
    for match in _MATH_TOKEN.finditer(text):
        token = match.group(0)
        glued = match.start() == position and current
        if glued and not (token.strip() and current.rstrip() != current and _OPERAND_END.search(current.rstrip())
                          and _OPERAND_START.match(token)):  # fmt: skip
            current += token
        else:
            spans.append((start, current))
            current, start = token, match.start()
        position = match.end()
    spans.append((start, current))
    cleaned = [(at, re.sub(r"^of\b|\bof$", "", span.strip()).strip().rstrip(" \n.=,+-*/^÷×").lstrip(" .=,+*/^÷×"))
               for at, span in spans]  # fmt: skip
    return [(at, span) for at, span in cleaned if re.search(r"\d", span) and re.search(r"[-+*/^=÷×%xyz]", span)]


def _answer_after_cue(message: str, spans: list[tuple[int, str]]) -> str | None:
    cue = _ANSWER_CUE.search(message)
    if cue is None:
        return None
    after = [span for at, span in spans if at >= cue.end() - 1]
    if after:
        return after[0]
    plain = re.match(r"\s*(-?\d+(?:[./]\d+)?)", message[cue.end() :])  # "I think it's 7/8", "我写的是 2"
    return plain.group(1) if plain else None


def _assignments(message: str, spans: list[tuple[int, str]]) -> str | None:
    """Every `x = value` span, joined the way the student wrote them ("x = 4 or x = 5", "x = 7, y = 5")."""
    found = [" ".join(span.replace("=", " = ").split()) for _, span in spans if _ASSIGNMENT.match(span)]
    if not found:
        return None
    joiner = " 或 " if "或" in message else " or " if re.search(r"\bor\b", message) else ", "
    return joiner.join(dict.fromkeys(found))


@planner
def plan_answer_check(message: str, lang: str) -> list[PlannedCall]:
    """A problem plus the student's answer in one message: check it with sympy before the model speaks."""
    if _QUIZ_ID_IN_TEXT.search(message.lower()):
        return []  # answers to a stored quiz: plan_grading's job
    spans = _math_spans(message)
    worked = next((s for _, s in spans if s.count("=") == 1 and not re.search(r"[xyz]", s)), None)
    if worked:  # "7/10 - 1/5 = 6/5": the problem and the student's result in one line
        problem, answer = (side.strip() for side in worked.split("="))
        return [PlannedCall("check_answer", {"problem": problem, "answer": answer}, "a calculation and its result")]
    equations = [s for _, s in spans if "=" in s and not _ASSIGNMENT.match(s)]
    answer = _answer_after_cue(message, spans)
    if answer is None or (answer and _ASSIGNMENT.match(answer)):
        answer = _assignments(message, spans) or answer
    if answer is None:
        return []
    if equations:
        variables = set(re.findall(r"[xyz]", " ".join(equations)))
        solving = equations if len(variables) > 1 and answer.count("=") > 1 else equations[:1]
        problem = "; ".join(solving)
    else:
        expressions = [s for _, s in spans if "=" not in s and s != answer]
        if not expressions:
            return []
        mode = next((m for m, words in _MODE_WORDS if re.search(words, message, re.IGNORECASE)), None)
        problem = f"{mode} {expressions[0]}" if mode else expressions[0]
    return [PlannedCall("check_answer", {"problem": problem, "answer": answer}, "a problem and the student's answer")]


def _quiz_count(message: str) -> int:
    digits = re.search(r"(\d{1,2})\s*(?:道|个|questions?|qs\b|easy|medium|hard)", message, re.IGNORECASE)
    if digits:
        return max(1, min(int(digits.group(1)), 10))
    zh = re.search(r"([一二两三四五六七八九十])\s*道", message)
    return _ZH_DIGITS[zh.group(1)] if zh else 5


@planner
def plan_quiz(message: str, lang: str) -> list[PlannedCall]:
    """A request for practice questions on a known topic: generate the quiz with the tool, not the model."""
    if not _QUIZ_REQUEST.search(message) or _QUIZ_ID_IN_TEXT.search(message.lower()):
        return []
    lowered = message.lower().replace("'", "").replace("’", "")
    names = sorted({*TOPICS, *TOPIC_ALIASES}, key=len, reverse=True)
    topic = next((n for n in names if n.replace("_", " ") in lowered.replace("_", " ")), None)
    if topic is None:
        return []
    difficulty = next((d for d, words in _DIFFICULTY_WORDS if re.search(words, lowered)), "medium")
    seed = 2 if re.search(r"second|another|再|第二", lowered) else 1
    arguments = {"topic": TOPIC_ALIASES.get(topic, topic), "difficulty": difficulty, "count": _quiz_count(message),
                 "seed": seed}  # fmt: skip
    return [PlannedCall("generate_quiz", arguments, "a request for practice questions")]


def _is_numbered(text: str) -> bool:
    """Whether the answers are numbered 1, 2, 3 ... ("5、跳过、7" is not: its "5、" is an answer)."""
    numbers = [int(n) for n in _NUMBERED.findall(text)]
    return len(numbers) >= 2 and numbers == list(range(1, len(numbers) + 1))


def _quiz_answers(text: str) -> list[str]:
    """ "1) 5 cm 2) 125 cm" or "0.2 A、2 A、0.5 A" -> one answer per question, in order; a question the
    student skipped ("4) skipped", "跳过") keeps its place with an empty answer."""
    text = _ANSWERS_CUE.sub("", text, count=1).strip(" :：").rstrip(" 。.")
    # split() keeps each item number (a group): [2::2] drops them
    parts = _NUMBERED.split(text)[2::2] if _is_numbered(text) else _LISTED.split(text)
    answers = [part.strip(" ,，;；。.") for part in parts if part.strip(" ,，;；。.")] or [text]
    return ["" if _SKIPPED.match(answer) else answer for answer in answers]


@planner
def plan_grading(message: str, lang: str) -> list[PlannedCall]:
    """Answers to a stored quiz (its id in the message): grade them with the tool."""
    found = _QUIZ_ID_IN_TEXT.search(message.lower())
    if found is None:
        return []
    student = _STUDENT_CUE.search(message[found.end() :]) or _STUDENT_CUE.search(message[: found.start()])
    tail = message[found.end() :]
    if student and student.group(0) in tail:
        tail = tail.replace(student.group(0), " ")
    tail = re.sub(r"^[^\d\-xyz]*?(?=\d|-|x)", "", tail, count=1) if _is_numbered(tail) else tail
    arguments = {"quiz_id": found.group(0), "answers": _quiz_answers(tail)[:20],
                 "student": student.group(1) if student else "student"}  # fmt: skip
    return [PlannedCall("grade_quiz", arguments, "answers to a stored quiz")]
