"""Is an answer grounded in what the assistant was shown? Numbers, amounts, durations, places and drug names.

A small model fills gaps with invented specifics: a 1-year warranty becomes "8 weeks", the Hangzhou
warehouse "Guangzhou", a 3-7 day refund "2 weeks". This module finds the specifics an answer states
(every number with its unit, every city of the gazetteer, every term of the pack's
`data/grounding_terms.txt` such as drug names, every web or mail domain) and calls one unsupported when
it appears in none of the retrieved passages, the tool results or the user's own message. The scenario assistant then
answers with what the tools returned and the passage sentences closest to the question, cited, instead of
the guess (an extractive fallback: a quoted fact is never wrong, an invented one can hurt); so does an
answer too few of whose words were in front of the model (`support_share`), and `scenarios eval` counts
unsupported answers before and after that guard. An answer that passes is followed by the evidence it leaves
out (`with_evidence`): the tool results it does not state and the best passage sentences it does not restate.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Major cities, English and Chinese: the places a support answer invents most.
CITY_NAMES = (
    "beijing", "北京", "shanghai", "上海", "guangzhou", "广州", "shenzhen", "深圳", "hangzhou", "杭州",
    "nanjing", "南京", "chengdu", "成都", "wuhan", "武汉", "xi'an", "西安", "chongqing", "重庆", "tianjin", "天津",
    "suzhou", "苏州", "xiamen", "厦门", "qingdao", "青岛", "dalian", "大连", "shenyang", "沈阳", "changsha", "长沙",
    "zhengzhou", "郑州", "jinan", "济南", "hefei", "合肥", "fuzhou", "福州", "kunming", "昆明", "harbin", "哈尔滨",
    "ningbo", "宁波", "dongguan", "东莞", "foshan", "佛山", "wuxi", "无锡", "hong kong", "香港", "macau", "澳门",
    "taipei", "台北", "singapore", "新加坡", "tokyo", "东京", "london", "伦敦", "paris", "巴黎", "berlin", "柏林",
    "new york", "纽约", "los angeles", "洛杉矶", "sydney", "悉尼",
)  # fmt: skip
TERMS_FILE = "data/grounding_terms.txt"

_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十百]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A date is one claim: "2026-11-30" in the prompt must not make "30 days" look supported.
_DATE = re.compile(r"(\d{4})\s*[-/年.]\s*(\d{1,2})\s*[-/月.]\s*(\d{1,2})\s*日?")
_LINK = re.compile(r"(?:https?://|www\.)([a-z0-9.-]+\.[a-z]{2,})|[\w.+-]+@([a-z0-9.-]+\.[a-z]{2,})")
_WHOLE_LINK = re.compile(r"(?:https?://|www\.)\S+|[\w.+-]+@\S+")  # numbers inside a link are not quantities
_ENUMERATOR = re.compile(r"(?m)^\s*\(?\d{1,2}[.)、．]\s")  # "1. Check ..." at a line start is a list marker


@dataclass(frozen=True)
class Claim:
    text: str  # as it appears in the answer
    kind: str  # number | place | term | link | verdict (one a tool's check contradicts)


def chinese_number(text: str) -> int | None:
    """Small Chinese numerals (up to 999): 七 -> 7, 十二 -> 12, 三十 -> 30, 一百零五 -> 105."""
    if not text or any(ch not in _CN_DIGITS and ch not in "十百" for ch in text):
        return None
    total, current = 0, 0
    for ch in text:
        if ch in _CN_DIGITS:
            current = _CN_DIGITS[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
    return total + current


def normalise(text: str) -> str:
    """Width, case and Chinese numerals do not matter: "七天" and "7 天" state the same number."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _CN_NUMBER.sub(lambda m: str(n) if (n := chinese_number(m.group(0))) is not None else m.group(0), text)


# Units a quantity is compared with, English and Chinese under one name: "7 days" and "7 天" agree, but
# "30 minutes" in a passage does not make "30 days" in an answer true.
UNITS = {
    "day": ("days", "day", "天", "日"), "week": ("weeks", "week", "个星期", "星期", "周"),
    "month": ("months", "month", "个月", "月"), "year": ("years", "year", "年"),
    "hour": ("hours", "hour", "hrs", "个小时", "小时", "钟头"), "minute": ("minutes", "minute", "mins", "分钟"),
    "percent": ("%", "percent", "per cent"), "yuan": ("yuan", "rmb", "元", "块"), "point": ("points", "积分"),
    "mg": ("mg", "毫克"), "ml": ("ml", "毫升"), "g": ("grams", "gram", "克"), "kg": ("kg", "公斤"),
    "times": ("times a day", "times", "次"), "tablet": ("tablets", "tablet", "片", "粒"),
}  # fmt: skip
_UNIT_OF = {word: unit for unit, words in UNITS.items() for word in words}
_UNIT_WORDS = "|".join(re.escape(w) for w in sorted(_UNIT_OF, key=len, reverse=True))
_QUANTITY = re.compile(
    rf"(?P<currency>[¥$]|rmb\s*)?(?P<n>\d+(?:[.,]\d+)*)"
    rf"(?:\s*(?:-|~|to|到|至)\s*(?P<m>\d+(?:[.,]\d+)*))?"
    rf"(?:\s*-?\s*(?:working|business|calendar|个工作|工作|个)?\s*(?P<unit>{_UNIT_WORDS})(?![a-z]))?"
)


def quantities_in(text: str) -> set[tuple[str, str]]:
    """(number, unit) for every number ("" when no unit follows); a range gives both ends the unit; dates
    come whole as (YYYY-MM-DD, "date"); thousands separators dropped; ¥ counts as yuan."""
    text = normalise(text)
    found = {(f"{int(y):04d}-{int(m):02d}-{int(d):02d}", "date") for y, m, d in _DATE.findall(text)}
    for match in _QUANTITY.finditer(_DATE.sub(" ", text)):
        unit = _UNIT_OF.get(match["unit"] or "", "yuan" if match["currency"] in ("¥", "rmb") else "")
        for number in (match["n"], match["m"]):
            if number:
                found.add((number.replace(",", ""), unit))
    return found


def pack_terms(pack_root: Path | None) -> tuple[str, ...]:
    path = pack_root / TERMS_FILE if pack_root else None
    if not path or not path.is_file():
        return ()
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip().casefold() for line in lines if line.strip() and not line.startswith("#"))


def _mentions(text: str, names: Iterable[str]) -> set[str]:
    """The names the text mentions: whole words for Latin names, substrings for Chinese ones."""
    found = set()
    for name in names:
        if name.isascii():
            if re.search(rf"(?<![a-z]){re.escape(name)}(?![a-z])", text):
                found.add(name)
        elif name in text:
            found.add(name)
    return found


def claims(answer: str, terms: Sequence[str] = ()) -> list[Claim]:
    """The specifics an answer states: numbers (list markers excluded), cities, the pack's terms."""
    text = normalise(_ENUMERATOR.sub(" ", answer))
    found = [Claim(f"{n} {unit}".strip(), "number") for n, unit in sorted(quantities_in(_WHOLE_LINK.sub(" ", text)))]
    found += [Claim(c, "place") for c in sorted(_mentions(text, CITY_NAMES))]
    found += [Claim(t, "term") for t in sorted(_mentions(text, terms))]
    found += [Claim(domain, "link") for domain in sorted(domains_in(text))]
    return found


def domains_in(text: str) -> set[str]:
    """The web and mail domains a text names: an invented link sends a customer somewhere unknown."""
    return {(web or mail).removeprefix("www.") for web, mail in _LINK.findall(normalise(text))}


def unsupported(answer: str, support: Sequence[str], terms: Sequence[str] = ()) -> list[Claim]:
    """The answer's claims that appear in none of the support texts (passages, tool results, the message)."""
    shown = normalise("\n".join(support))
    quantities = quantities_in(shown)
    numbers = {n for n, _ in quantities}
    domains = domains_in(shown)
    missing = []
    for claim in claims(answer, terms):
        if claim.kind == "number":
            number, _, unit = claim.text.partition(" ")
            # with a unit, the same quantity must be shown; a bare number only needs the number somewhere
            if (number, unit) not in quantities if unit else number not in numbers:
                missing.append(claim)
        elif claim.kind == "link":
            if claim.text not in domains:
                missing.append(claim)
        elif not _mentions(shown, [claim.text]):
            missing.append(claim)
    return missing


# A tool that checks something returns "correct": true or false (check_answer). An answer that states the
# opposite verdict tells a student a right answer is wrong: "…不相等，所以还不对" for a correct expansion
# (edu-eval-018). The wrong-words are read first: "not correct" and "不正确" hold a right-word.
_SAYS_WRONG = re.compile(
    r"\bnot (?:quite )?(?:correct|right)\b|\bincorrect\b|\bwrong\b|\bisn't (?:correct|right)\b"
    r"|不对|不正确|错了|算错|做错",
    re.I,
)
_SAYS_RIGHT = re.compile(r"\bcorrect\b|正确|对了|没错", re.I)


def contradicted_verdicts(answer: str, results: Sequence[Any]) -> list[Claim]:
    """The answer's verdict ("不对", "correct") where a tool result's "correct" says the opposite; [] when the
    answer states no verdict or agrees with every one."""
    wrong, right = _SAYS_WRONG.search(answer), _SAYS_RIGHT.search(answer)
    said = wrong or right
    if said is None:
        return []
    says_right = wrong is None
    checked = [r["correct"] for r in results if isinstance(r, dict) and isinstance(r.get("correct"), bool)]
    return [Claim(said[0], "verdict")] if any(verdict != says_right for verdict in checked) else []


# A Latin full stop ends a sentence only before a space or the end: "9.5", "3.6 km/h" and "support@lumen.store"
# are not cut. Chinese stops need no space.
_SENTENCE = re.compile(r"(?<=[.!?;])(?=\s|$)\s*|(?<=[。！？；])\s*|\n+")
_SENTENCE_ENDS = tuple('.!?。！？；;:：)）"”|')
_TABLE_ROW = re.compile(r"^\s*\|(.*)\|\s*$")
_TABLE_RULE = re.compile(r"^\s*\|[\s:|-]*-[\s:|-]*\|\s*$")
_HEADING = re.compile(r"^\s*#+\s*(.*?)\s*$")
_WORD = re.compile(r"[a-z0-9]+|[\u4e00-\u9fff]")
# An answer with fewer than this share of its words in what it was shown (passages, tool results, the
# user's turns) is not grounded in them: "No worries, let me look that up." to a refund question, or the
# offline LM's Chinese word salad. Such answers make the same extractive fallback as invented specifics.
UNGROUNDED_SHARE = 0.3
QUOTED_SENTENCES = 3  # the fallback quotes this many passage sentences, best first
EVIDENCE_SENTENCES = 2  # a grounded answer is followed by this many, less those it already states
# How passage sentences are ranked for a question, chosen on the packs' kb_dialogues questions (training
# data, never eval items): of the specifics in their reference answers that retrieval showed, three quotes
# hold 0.46 (zh) / 0.46 (en) with plain BM25 and 0.55 / 0.54 with these (bench/quote_choice.py).
SENTENCE_B = 0.0  # no BM25 length penalty: it made "Gold members get free pickup." beat the sentence with the fee
PASSAGE_DISCOUNT = 0.5  # a sentence of the k-th passage (0-based) counts 1 / (1 + 0.5 k): retrieval ranked them
QUANTITY_BONUS = 0.3  # "how long", "多久": sentences with a quantity gain 0.3 of the best sentence's score
RESTATED_SHARE = 0.5  # a sentence without specifics is restated by an answer holding half its words
_ASKS_QUANTITY = re.compile(
    r"\bhow (?:long|many|much|soon|often|old|far)\b|\bwhen\b|\bwhat time\b|多久|多长|几|多少|什么时候|多大|多远", re.I
)
_STOPWORDS = frozenset({
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "do", "does", "did", "i", "you", "we", "he", "she",
    "they", "my", "your", "our", "his", "her", "their", "it", "its", "of", "to", "in", "on", "for", "and", "or",
    "at", "by", "with", "from", "that", "this", "there", "can", "could", "should", "would", "will", "what", "when",
    "how", "which", "who", "why", "where", "if", "me", "us", "them", "am",
    "的", "了", "是", "吗", "呢", "吧", "啊", "什么", "怎么", "怎样", "如何", "哪", "哪些", "为什么", "我", "你", "他",
    "她", "它", "我们", "你们", "这", "那", "这个", "那个", "和", "与", "或", "在", "有", "就", "都", "也", "还", "请",
})  # fmt: skip
MAX_TOOL_FIELD_CHARS = 300  # a tool result's text field longer than this is left out of the fallback
MAX_TOOL_RECORDS = 5  # of a list of records (an order's items, the interactions found), this many are stated


def _units(text: str) -> set[str]:
    """Latin words and Chinese character bigrams: overlap without a segmenter."""
    tokens = _WORD.findall(normalise(text))
    words = {t for t in tokens if t.isascii() and len(t) > 2}
    chars = [t for t in tokens if not t.isascii()]
    return words | {a + b for a, b in itertools.pairwise(chars)}


def support_share(answer: str, support: Sequence[str]) -> float:
    """The share of the answer's words (Latin words over two letters, Chinese character bigrams) that the
    support texts contain; 0.0 for an answer without any."""
    words = _units(answer)
    return len(words & _units("\n".join(support))) / len(words) if words else 0.0


def passage_sentences(text: str) -> list[tuple[str, str]]:
    """(sentence, what it is read with) for every whole sentence of a passage: the heading above it, and for a
    table row the table's header ("| 圆 | `S = πr^2` |" under "| 图形 | 面积公式 |" is the circle's area
    formula). Headings, header rows and rules are not sentences, and neither are the pieces a passage window
    cuts: its text ending without a full stop, or starting in lower case."""
    found, heading, header = [], "", ""
    lines = text.strip().splitlines()
    for i, line in enumerate(lines):
        if match := _HEADING.match(line):
            heading = match.group(1)
            continue
        if _TABLE_RULE.match(line):
            continue
        if row := _TABLE_ROW.match(line):
            cells = " | ".join(cell.replace("**", "").strip() for cell in row.group(1).split("|"))
            if i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1]):  # the row above a rule names the columns
                header = cells
            else:
                found.append((cells, f"{heading} {header}".strip()))
            continue
        header = ""
        for sentence in _SENTENCE.split(line):
            sentence = sentence.replace("**", "").strip(" -*#>\t")  # bold marks read as noise in a quote
            if len(sentence) > 8:
                found.append((sentence, heading))
    if found and not text.rstrip().endswith(_SENTENCE_ENDS):
        found.pop()
    if found and text.lstrip()[:1].islower():
        found.pop(0)
    return found


def _ranking_words(text: str) -> list[str]:
    """Retrieval's tokens, English ones without stop words and crude suffixes ("pays" finds "pay")."""
    from polyglm.scenarios.retrieval import tokenize

    return [_stem(t) if t.isascii() else t for t in tokenize(text) if t not in _STOPWORDS]


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def best_sentences(
    question: str, passages: Sequence[tuple[str, str]], k: int = QUOTED_SENTENCES
) -> list[tuple[str, str]]:
    """(sentence, citation) of the `k` passage sentences that answer the question best, in passage order:
    BM25 of the question over the sentences, each read with its heading ("Who pays return shipping" says
    what the sentence under it is about), discounted by its passage's retrieval rank, and favouring
    sentences with a quantity when the question asks for one. Only sentences sharing a word count."""
    from polyglm.scenarios.retrieval import BM25

    candidates = [(sentence, heading, citation, rank) for rank, (text, citation) in enumerate(passages)
                  for sentence, heading in passage_sentences(text)]  # fmt: skip
    if not candidates:
        return []
    bm25 = BM25([_ranking_words(f"{heading} {sentence}") for sentence, heading, *_ in candidates], b=SENTENCE_B)
    scores = [score / (1 + PASSAGE_DISCOUNT * c[3]) for score, c in zip(bm25.scores(_ranking_words(question)),
                                                                          candidates, strict=True)]  # fmt: skip
    if _ASKS_QUANTITY.search(question):
        bonus = QUANTITY_BONUS * max(scores)
        scores = [s + bonus if s > 0 and quantities_in(c[0]) else s for s, c in zip(scores, candidates, strict=True)]
    top = sorted((i for i, score in enumerate(scores) if score > 0), key=lambda i: -scores[i])[:k]
    return [(candidates[i][0], candidates[i][2]) for i in sorted(top)]


def restates(answer: str, sentence: str) -> bool:
    """Does the answer already say what the sentence says? Every specific of it, or, for a sentence
    without specifics, half its words."""
    if claims(sentence):
        return not unsupported(sentence, [answer])
    return support_share(sentence, [answer]) >= RESTATED_SHARE


def _plain(value: Any) -> str | None:
    """A value as text: a number, a short string, a list of them ("a, b"); None for anything else."""
    if isinstance(value, list) and value and all(isinstance(v, str | int | float) for v in value):
        value = ", ".join(map(str, value))
    if isinstance(value, bool | int | float) or (isinstance(value, str) and 0 < len(value) <= MAX_TOOL_FIELD_CHARS):
        return str(value)
    return None


def _records(value: Any, lang: str) -> str | None:
    """A list of records as their plain values, "a / b | c / d" (the first MAX_TOOL_RECORDS); None otherwise."""
    if not (isinstance(value, list) and value and all(isinstance(v, dict) for v in value)):
        return None
    shown = [" / ".join(p for k, v in _in_language(record, lang) if (p := _plain(v)) is not None) for record in value]
    return " | ".join(r for r in shown[:MAX_TOOL_RECORDS] if r) or None


# Fields a tool returns for the assistant, never to be quoted to the user: a quiz's answers_for_tutor (the
# student would see the answers before answering) and its note on how to use them.
FOR_ASSISTANT = re.compile(r"(?:^|_)for_(?:tutor|assistant)$|^note$")


def _in_language(fields: dict, lang: str) -> list[tuple[str, Any]]:
    """The fields for the user in `lang`: without those another language's reader gets ("name_zh" or "zh" in an
    English answer; a Chinese product name made an English answer read as Chinese) and those FOR_ASSISTANT."""
    others = [other for other in INTRO if other != lang]
    foreign = tuple(f"_{other}" for other in others)  # "name_en"; not "token" or "seen"
    return [(key, value) for key, value in fields.items()
            if key not in others and not key.endswith(foreign) and not FOR_ASSISTANT.search(key)]  # fmt: skip


def tool_facts(result: dict, lang: str = "en") -> str:
    """A tool result's fields in `lang`, "key: value; ...": its plain values and its lists of records (the
    interaction a drug lookup found: "interactions: sildenafil, nitroglycerin / contraindicated / … / 禁止合用。…")."""
    shown = []
    for key, value in _in_language(result, lang):
        text = _records(value, lang) or _plain(value)
        if text:
            shown.append(f"{key.removesuffix(f'_{lang}')}: {text}")  # "verdict_zh: 正确" reads "verdict: 正确"
    return "; ".join(shown)


_TOOL_VALUE_SEPARATOR = re.compile(r", | / | \| ")


def tool_said(answer: str, facts: str) -> bool:
    """Does the answer state every value a tool returned ("status: shipped; total: 120" -> shipped, 120)?"""
    values = [v.strip() for field in facts.split("; ") for v in _TOOL_VALUE_SEPARATOR.split(field.partition(": ")[2])]
    target = normalise(answer)
    return all(normalise(value) in target for value in values if value)


INTRO = {
    "en": "I can't confirm that from the sources I have, so I won't guess.",
    "zh": "我无法根据现有资料确认这一点，所以不作猜测。",
}
TOOL_LINE = {"en": "The {name} tool returned: {facts}.", "zh": "工具 {name} 的结果：{facts}。"}
QUOTE_LINE = {"en": "The closest passages say: {quotes}", "zh": "最相关的资料原文：{quotes}"}
SOURCES_LINE = {"en": "From the sources: {quotes}", "zh": "资料原文：{quotes}"}
NO_SOURCE = {lang: f"{intro} " + {"en": "Please check with our staff.", "zh": "请向工作人员核实。"}[lang]
             for lang, intro in INTRO.items()}  # fmt: skip


def evidence_lines(
    question: str, passages: Sequence[tuple[str, str]], lang: str, tool_results: Sequence[tuple[str, dict]] = (),
    answer: str = "", k: int = QUOTED_SENTENCES, quote_line: dict[str, str] = QUOTE_LINE,
) -> list[str]:  # fmt: skip
    """What the tools returned and the passage sentences closest to the question, quoted and cited, less what
    `answer` already states."""
    pick = lang if lang in INTRO else "en"
    lines = []
    for name, result in tool_results:
        facts = tool_facts(result, pick)
        line = TOOL_LINE[pick].format(name=name, facts=facts.rstrip(".。"))
        if facts and line not in lines and not tool_said(answer, facts):  # the same call made twice is said once
            lines.append(line)
    quotes = [(s, c) for s, c in best_sentences(question, passages, k) if not (answer and restates(answer, s))]
    if quotes:
        cited = " ".join(f"\u201c{sentence}\u201d [{citation}]" for sentence, citation in quotes)
        lines.append(quote_line[pick].format(quotes=cited))
    return lines


def fallback_answer(
    question: str, passages: Sequence[tuple[str, str]], lang: str, tool_results: Sequence[tuple[str, dict]] = ()
) -> str:
    """Says it cannot confirm, then what the tools returned and the passage sentences closest to the question,
    quoted and cited: every word of it was in front of the model."""
    pick = lang if lang in INTRO else "en"
    lines = evidence_lines(question, passages, lang, tool_results)
    return " ".join([INTRO[pick], *lines]) if lines else NO_SOURCE[pick]


def with_evidence(
    answer: str, question: str, passages: Sequence[tuple[str, str]], lang: str,
    tool_results: Sequence[tuple[str, dict]] = (),
) -> str:  # fmt: skip
    """A grounded answer followed by what it left out of its evidence: the tool results it does not state and
    the passage sentences closest to the question that it does not restate, cited. A small model's answer
    that passes the guard often leaves out the one specific asked for ("how many days?": "unused items
    with tags can be returned"); the quote puts it in front of the reader with its source."""
    lines = evidence_lines(question, passages, lang, tool_results, answer, EVIDENCE_SENTENCES, SOURCES_LINE)
    return " ".join([answer, *lines])


_CITATION = re.compile(r"\[([a-z0-9][a-z0-9_-]*)(?:#\d+)?\]", re.I)
BETTER_SHARE = 0.25  # without specifics, another passage must hold this much more of the words to take a citation


def mend_citations(
    answer: str, passages: Sequence[tuple[str, str]], terms: Sequence[str] = (), known: Sequence[str] = ()
) -> tuple[str, list[tuple[str, str]]]:
    """The answer with each inline citation naming the retrieved document that holds what it cites, and the
    (cited, now) pairs changed. A small model cites the first id in its prompt or a neighbour's ("…电子产品
    共 1 年 [payment-methods-zh]" for the warranty passage's fact), sending the reader to the wrong page.
    What a citation cites: the answer's text since the previous citation. A citation moves to the document
    of the retrieved passages that holds more of that text's specifics, or as many and BETTER_SHARE more of
    its words; one naming no retrieved document moves to the best one. Specifics the `known` texts hold (the
    user's turns, tool results) are no passage's: "120" from the triage advice does not move a fever
    citation to the leaflet that also names 120."""
    documents: dict[str, list[str]] = {}
    for text, citation in passages:
        documents.setdefault(citation.partition("#")[0], []).append(text)
    changed, start, pieces = [], 0, []
    for match in _CITATION.finditer(answer):
        cited = match[1]
        said = answer[start : match.start()]
        own = {c.text for c in unsupported(said, known, terms)}  # its specifics that only a passage can hold
        scores = {doc: _holds(said, own, texts, terms) for doc, texts in documents.items()}
        best = max(scores, key=scores.__getitem__, default=cited)
        if best != cited and _beats(scores[best], scores.get(cited)):
            pieces.append(f"{said}[{best}]")
            changed.append((match[0][1:-1], best))
        else:
            pieces.append(said + match[0])
        start = match.end()
    return "".join(pieces) + answer[start:], changed


def cited_documents(text: str) -> list[str]:
    """The document ids a text cites inline, in order: "[warranty-en]" and "[warranty-en#0]" both cite warranty-en."""
    return [match[1] for match in _CITATION.finditer(text)]


def _holds(said: str, own: set[str], texts: Sequence[str], terms: Sequence[str]) -> tuple[int, float]:
    """(how many of the specifics `own` the passages contain, the share of the text's words they contain)."""
    return len(own - {c.text for c in unsupported(said, texts, terms)}), support_share(said, texts)


def _beats(best: tuple[int, float], cited: tuple[int, float] | None) -> bool:
    if cited is None:  # the answer named a document it was not shown
        return best[0] > 0 or best[1] > 0
    return best[0] > cited[0] or (best[0] == cited[0] and best[1] >= cited[1] + BETTER_SHARE)
