"""Tools of the medical (patient-education) pack: red-flag triage and a small drug-interaction table.

Both tools are teaching aids, not diagnosis. `triage` matches symptom text (Chinese or English) against
red-flag rules and always escalates when one fires; a negated mention ("no chest pain", "没有胸痛") does
not count. `drug_interactions` normalises brand and Chinese names to one generic name and looks pairs up
in a short table. Replies come in the language of the input (any Chinese character -> zh).

The words live in `data/triage_rules.json` (keyword groups, reasons, advice) and
`data/interactions.json` (medicines, aliases, pairs); the decisions live here.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polyglm.scenarios.tooling import PlannedCall, planner, tool

DATA = Path(__file__).parent / "data"
_TRIAGE = json.loads((DATA / "triage_rules.json").read_text(encoding="utf-8"))
_TABLE = json.loads((DATA / "interactions.json").read_text(encoding="utf-8"))
TEXTS: dict[str, dict[str, str]] = _TRIAGE["texts"]
GROUPS: dict[str, dict[str, list[str]]] = _TRIAGE["groups"]
LEAFLETS: dict[str, str] = _TRIAGE["leaflets"]  # symptom group -> leaflet topic (kb id = "<topic>-<lang>")
DRUGS: dict[str, dict[str, Any]] = _TABLE["drugs"]  # generic -> {"zh", "classes", "aliases"}
INTERACTIONS: list[dict[str, Any]] = _TABLE["interactions"]  # ordered most specific first

_NEGATION = re.compile(r"(?:\bno\b|\bnot\b|\bwithout\b|\bdenies\b|\bnever\b|\bnone\b|没有|没|未|否认|无(?![法力反]))")
_CLAUSE_BREAK = re.compile(r"[,.;:!?，。；：！？、\n|]|\bbut\b|\bhowever\b|但是|但|不过|可是")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _compile(words: dict[str, list[str]]) -> re.Pattern[str]:
    """English keywords match at a word start (so "sweat" finds "sweating"); Chinese ones anywhere.

    A keyword written "re:..." is a regular expression (e.g. "not breathing" but not "breathing difficulty").
    """

    def one(keyword: str, english: bool) -> str:
        body = keyword[3:] if keyword.startswith("re:") else re.escape(keyword)
        return r"(?<![a-z])" + body if english else body

    return re.compile("|".join([one(k, True) for k in words["en"]] + [one(k, False) for k in words["zh"]]))


_PATTERNS = {name: _compile(words) for name, words in GROUPS.items()}


def _has(text: str, group: str) -> bool:
    """True if a keyword of the group occurs without a negation earlier in the same clause."""
    for match in _PATTERNS[group].finditer(text):
        breaks = [m.end() for m in _CLAUSE_BREAK.finditer(text, 0, match.start())]
        if not _NEGATION.search(text[breaks[-1] if breaks else 0 : match.start()]):
            return True
    return False


class Facts:
    """What the rules look at: the lower-cased symptom text plus the numbers pulled out of it."""

    def __init__(self, text: str, age: int, hours: float, temp_c: float | None, infant_months: float | None):
        self.text = text  # all symptoms joined, NFKC-normalised, lower case
        self.age = age  # years
        self.hours = hours  # how long the main symptom has lasted
        self.temp_c = temp_c  # highest body temperature mentioned, °C (only when a fever is mentioned)
        self.infant_months = infant_months  # a baby's age in months where the text states it

    def has(self, *groups: str) -> bool:
        """True if any of the keyword groups is mentioned (and not negated)."""
        return any(_has(self.text, g) for g in groups)


def _infant_under_3_months(f: Facts) -> bool:
    """Age 0 and either stated under 3 months or not stated (then assume the youngest, to be safe)."""
    return f.age == 0 and (f.infant_months is None or f.infant_months < 3)


def _fever(f: Facts) -> bool:
    return (f.temp_c is not None and f.temp_c >= 38.0) or (f.temp_c is None and f.has("fever"))


# (rule id, level, test), checked in this order; the ids key the reasons and advice in triage_rules.json.
RULES: tuple[tuple[str, str, Callable[[Facts], bool]], ...] = (
    ("suicidal_thoughts", "emergency", lambda f: f.has("suicidal")),
    ("heart_attack_signs", "emergency", lambda f: f.has("chest_pain") and (f.has("cardiac_extra") or f.age >= 40)),
    ("stroke_fast", "emergency", lambda f: f.has("stroke")),
    (
        "anaphylaxis",
        "emergency",
        lambda f: (
            f.has("anaphylaxis") or (f.has("allergy") and f.has("breathing_severe", "breathing_mild", "faint_dizzy"))
        ),
    ),
    ("severe_breathing", "emergency", lambda f: f.has("breathing_severe")),
    ("choking", "emergency", lambda f: f.has("choking")),
    ("heavy_bleeding", "emergency", lambda f: f.has("bleeding_heavy", "open_fracture")),
    ("unconscious", "emergency", lambda f: f.has("unconscious")),
    ("seizure", "emergency", lambda f: f.has("seizure")),
    ("overdose_or_poisoning", "emergency", lambda f: f.has("overdose")),
    (
        "meningitis_signs",
        "emergency",
        lambda f: f.has("rash_nonblanching") or (f.has("stiff_neck") and (_fever(f) or f.has("headache"))),
    ),
    (
        "heatstroke",
        "emergency",
        lambda f: (
            f.has("heatstroke") or (f.has("heat", "sunburn_heat") and f.has("confusion", "unconscious", "seizure"))
        ),
    ),
    ("infant_fever_under_3_months", "emergency", lambda f: _infant_under_3_months(f) and _fever(f)),
    ("serious_burn", "emergency", lambda f: f.has("burn_severe")),
    (
        "head_injury_red_flags",
        "emergency",
        lambda f: f.has("head_injury") and f.has("vomiting", "confusion", "unconscious", "seizure", "blood_thinner"),
    ),
    ("fever_infant_3_to_12_months", "urgent", lambda f: f.age == 0 and not _infant_under_3_months(f) and _fever(f)),
    ("very_high_fever", "urgent", lambda f: f.temp_c is not None and f.temp_c >= 40.0),
    ("long_fever", "urgent", lambda f: _fever(f) and f.hours >= 72),
    ("chest_pain", "urgent", lambda f: f.has("chest_pain")),
    ("shortness_of_breath", "urgent", lambda f: f.has("breathing_mild")),
    ("bleeding_from_gut_or_urine", "urgent", lambda f: f.has("blood_loss_gut")),
    ("severe_abdominal_pain", "urgent", lambda f: f.has("severe_abdominal")),
    ("dehydration_signs", "urgent", lambda f: f.has("dehydration") or (f.age == 0 and f.has("vomiting", "diarrhoea"))),
    (
        "long_vomiting_or_diarrhoea",
        "urgent",
        lambda f: (
            (f.has("vomiting") and f.hours >= 48)
            or (f.has("diarrhoea") and f.hours >= 168)
            or (f.has("vomiting", "diarrhoea") and (f.age < 5 or f.age >= 65) and f.hours >= 24)
        ),
    ),
    ("swallowing_difficulty", "urgent", lambda f: f.has("swallow_problem")),
    ("possible_fracture", "urgent", lambda f: f.has("fracture_sign")),
    (
        "long_nosebleed",
        "urgent",
        lambda f: f.has("nosebleed") and (f.hours >= 0.33 or f.has("blood_thinner", "head_injury")),
    ),
    ("head_injury", "urgent", lambda f: f.has("head_injury")),
    ("burn_needs_check", "urgent", lambda f: f.has("burn") and (f.has("blister_large") or f.age < 5 or f.age >= 70)),
    ("chemical_in_eye", "urgent", lambda f: f.has("eye_chemical")),
    ("pregnancy_warning", "urgent", lambda f: f.has("pregnancy") and f.has("pregnancy_warning")),
    ("long_cough", "urgent", lambda f: f.has("cough") and f.hours >= 21 * 24),
    ("long_sore_throat", "urgent", lambda f: f.has("sore_throat") and f.hours >= 7 * 24),
)
_missing = {rid for rid, _, _ in RULES} - set(_TRIAGE["rules"])
if _missing:  # fail at import, not in the middle of a conversation
    raise RuntimeError(f"triage_rules.json lacks texts for rules {sorted(_missing)}")

_ZH_NUMBERS = {
    "十一": "11",
    "十二": "12",
    "一": "1",
    "二": "2",
    "两": "2",
    "三": "3",
    "四": "4",
    "五": "5",
    "六": "6",
    "七": "7",
    "八": "8",
    "九": "9",
    "十": "10",
}
_AGE_PATTERNS = (
    re.compile(r"(\d{1,2}(?:\.\d)?)[\s-]*(day|week|month)s?[\s-]*old"),
    re.compile(r"aged?\s*(\d{1,2}(?:\.\d)?)\s*(day|week|month)s?"),
    re.compile(r"(\d{1,2})\s*(天|周|个多月|个月)\s*(?:大|的宝宝|的婴儿|的孩子|宝宝|婴儿)"),
    # "孩子 6 岁" is a six-year-old: after 宝宝/孩子/出生 the unit must be written; only 月龄 implies months.
    re.compile(r"(?:宝宝|婴儿|孩子|出生)\s*(\d{1,2})\s*(天|周|个多月|个月)"),
    re.compile(r"月龄\s*(\d{1,2})\s*(天|周|个多月|个月)?"),
)


def _infant_months(text: str) -> float | None:
    """A baby's age in months where the text states it ("6 weeks old", "aged 2 months", "两个月大", "出生10天")."""
    for word, digits in _ZH_NUMBERS.items():
        text = text.replace(word, digits)
    for pattern in _AGE_PATTERNS:
        match = pattern.search(text)
        if match:
            value, unit = float(match.group(1)), match.group(2) or "个月"
            if unit in ("day", "天"):
                return value / 30
            return value / 4.3 if unit in ("week", "周") else value
    return 0.5 if re.search(r"newborn|new-born|新生儿|刚出生", text) else None


def _temperature(text: str) -> float | None:
    """Highest body temperature in the text, in °C (accepts 38.5°C, 38.5度, 39c, 101 F)."""
    celsius = re.findall(r"(\d{2}(?:\.\d+)?)\s*(?:°\s*c|℃|摄氏度|度|°(?!\s*f)|c\b|degrees? c)", text)
    # a bare 35-43 after the word fever ("fever 38.5"), unless it is an age, a weight or a time
    celsius += re.findall(
        r"(?<![\d.])(3[5-9](?:\.\d+)?|4[0-3](?:\.\d+)?)(?![\d.]|\s*(?:y|岁|kg|公斤|斤|min|分|h|小时|d|天|w|周|m|个))",
        text,
    )
    fahrenheit = re.findall(r"(\d{2,3}(?:\.\d+)?)\s*(?:°\s*f|℉|f\b|degrees? f)", text)
    body = [t for t in [float(c) for c in celsius] + [(float(v) - 32) * 5 / 9 for v in fahrenheit] if 34 <= t <= 44]
    return max(body) if body else None


def _validate_triage(symptoms: list[str], age_years: int, duration_hours: float) -> None:
    if not isinstance(symptoms, list) or not symptoms:
        raise ValueError("symptoms must be a non-empty list of short descriptions, e.g. ['fever', 'cough']")
    if len(symptoms) > 30 or not all(isinstance(s, str) and 0 < len(s.strip()) <= 300 for s in symptoms):
        raise ValueError("symptoms: at most 30 items, each a non-empty text of at most 300 characters")
    if isinstance(age_years, bool) or not isinstance(age_years, int) or not 0 <= age_years <= 120:
        raise ValueError(f"age_years must be a whole number from 0 to 120 (use 0 for babies), got {age_years!r}")
    if isinstance(duration_hours, bool) or not isinstance(duration_hours, int | float):
        raise ValueError(f"duration_hours must be a number of hours, got {duration_hours!r}")
    if not 0 <= duration_hours <= 24 * 365 * 10:
        raise ValueError(f"duration_hours must be between 0 and 87600 (10 years), got {duration_hours!r}")


def _lang(texts: list[str]) -> str:
    return "zh" if any(_CJK.search(t) for t in texts) else "en"


def _leaflets(facts: Facts, level: str, lang: str) -> list[str]:
    """kb ids of the leaflets that match the symptoms (plus "when to see a doctor" when escalating)."""
    topics = {topic for group, topic in LEAFLETS.items() if facts.has(group)}
    if level != "self_care":
        topics.add("when-to-see-a-doctor")
    return sorted(f"{topic}-{lang}" for topic in topics)


@tool(timeout_s=2.0)
def triage(symptoms: list[str], age_years: int, duration_hours: float) -> dict:
    """Sort described symptoms into emergency, urgent (see a doctor today) or self-care, red flags first.

    Args:
        symptoms: Short descriptions in Chinese or English, e.g. ["chest pain", "sweating"] or ["发烧 39度", "咳嗽"].
            Include the temperature and, for babies, the age in weeks or months ("2 months old").
        age_years: Age in whole years, 0 to 120 (0 for babies under one year).
        duration_hours: How long the main symptom has lasted, in hours (0.5 for 30 minutes, 72 for 3 days).
    """
    _validate_triage(symptoms, age_years, duration_hours)
    lang = _lang(symptoms)
    text = unicodedata.normalize("NFKC", " | ".join(s.strip() for s in symptoms)).lower()
    temp = _temperature(text) if _has(text, "fever") else None  # "40度高温" is the weather, not a fever
    facts = Facts(text, age_years, float(duration_hours), temp, _infant_months(text))
    fired = [(rid, level) for rid, level, test in RULES if test(facts)]
    level = next((lv for lv in ("emergency", "urgent") if any(lvl == lv for _, lvl in fired)), "self_care")
    texts = _TRIAGE["rules"]
    if level == "self_care":
        advice = TEXTS["self_care"][lang]
    else:
        call = TEXTS["emergency_call" if level == "emergency" else "urgent_call"][lang]
        advice = " ".join([call, *(texts[rid]["advice"][lang] for rid, lvl in fired if lvl == level)])
    return {
        "level": level,
        "escalate": level == "emergency",  # the chat opens its answer with the pack's escalation text
        "matched_rules": [{"id": rid, "level": lvl, "reason": texts[rid]["reason"][lang]} for rid, lvl in fired],
        "advice": advice,
        "leaflets": _leaflets(facts, level, lang),
        "temperature_c": round(temp, 1) if temp is not None else None,
        "disclaimer": TEXTS["disclaimer"][lang],
    }


# ----------------------------------------------------------------------------- drug interactions


def _key(name: str) -> str:
    """Compare names without case, spaces, dashes, apostrophes, doses or dosage-form words."""
    name = unicodedata.normalize("NFKC", name).lower()
    name = re.sub(r"\d+(?:\.\d+)?\s*(?:mg|mcg|µg|ml|g|毫克|微克|毫升|克)", "", name)
    name = re.sub(
        r"\b(?:tablets?|caplets?|capsules?|syrup|gel|extra strength)\b|片|胶囊|缓释|肠溶|颗粒|口服液|糖浆", "", name
    )
    return re.sub(r"[\s\-'’.]+", "", name)


ALIASES: dict[str, str] = {
    _key(alias): generic for generic, info in DRUGS.items() for alias in (generic, info["zh"], *info["aliases"])
}


def _tags(generic: str) -> set[str]:
    return {generic, *DRUGS[generic]["classes"]}


def _find(a: str, b: str) -> dict[str, Any] | None:
    """The first (most specific) table entry whose two tags match the two medicines, either way round."""
    ta, tb = _tags(a), _tags(b)
    return next((i for i in INTERACTIONS if (i["a"] in ta and i["b"] in tb) or (i["a"] in tb and i["b"] in ta)), None)


@tool(timeout_s=2.0)
def drug_interactions(drugs: list[str]) -> dict:
    """Look up known interactions between medicines (generic, brand or Chinese names) in a small teaching table.

    Args:
        drugs: Two to ten medicine names, e.g. ["warfarin", "Advil"] or ["舍曲林", "曲马多"]; foods and drinks
            that interact (alcohol, grapefruit) are accepted too.
    """
    if not isinstance(drugs, list) or not 2 <= len(drugs) <= 10:
        raise ValueError("drugs must be a list of 2 to 10 medicine names, e.g. ['warfarin', 'ibuprofen']")
    if not all(isinstance(d, str) and 0 < len(d.strip()) <= 60 for d in drugs):
        raise ValueError("each medicine name must be a non-empty text of at most 60 characters")
    lang = _lang(drugs)
    found = [(d.strip(), ALIASES.get(_key(d))) for d in drugs]
    first_name: dict[str, str] = {}
    duplicates = []
    for given, generic in found:
        if generic and generic in first_name:
            same = {"en": "These are the same medicine: take only one of them.", "zh": "这是同一种药，只能用其中一种。"}
            duplicates.append({"names": [first_name[generic], given], "same_medicine": generic, "advice": same[lang]})
        elif generic:
            first_name[generic] = given
    unique = list(first_name)
    interactions = []
    for i, a in enumerate(unique):
        for b in unique[i + 1 :]:
            hit = _find(a, b)
            if hit:
                interactions.append(
                    {
                        "drugs": [a, b],
                        "severity": hit["severity"],
                        "effect": hit["effect"][lang],
                        "advice": hit["advice"][lang],
                    }
                )
    return {
        "drugs": [{"input": g, "name": n, "name_zh": DRUGS[n]["zh"] if n else None} for g, n in found],
        "interactions": interactions,
        "duplicates": duplicates,
        "unknown": [given for given, generic in found if not generic],
        "disclaimer": _TABLE["disclaimer"][lang],
    }


# ----------------------------------------------------------------------------- planners (before generation)

CONTEXT_GROUPS = {"blood_thinner", "pregnancy"}  # facts that change the rules but are not symptoms themselves
ASSUMED_AGE = 40  # when no age is stated: old enough that age-dependent red flags (chest pain) still fire
_AGE_IN_TEXT = (
    re.compile(r"(\d{1,3})[\s-]*(?:years?|yrs?|y)[\s-]*old"),
    re.compile(
        r"(?:i'?m|i am|is|he'?s|she'?s|aged?)\s*(?:about|around|nearly|almost)?\s*(\d{1,3})\b"
        r"(?!\.\d|\d|\s*(?:min|hour|hr|day|week|month|°|kg|degrees?|c\b|f\b))"  # not "is 38.5", "15 minutes"
    ),
    re.compile(r"(\d{1,3})\s*(?:周岁|岁)"),
)
_DURATION_IN_TEXT = re.compile(
    r"(?<!出生)(?<!出生 )(\d+(?:\.\d+)?|half an?|an?)\s*"  # "出生 5 周" is an age
    r"(minutes?|mins?|hours?|hrs?|days?|weeks?|months?|分钟|小时|天|周|星期|个月)(?![\s-]*old|大)"
)
_HOURS_PER = {"min": 1 / 60, "hou": 1, "hrs": 1, "hr": 1, "day": 24, "wee": 168, "mon": 720, "分钟": 1 / 60,
              "小时": 1, "天": 24, "周": 168, "星期": 168, "个月": 720}  # fmt: skip
_DRUG_NAMES = sorted({n for g, info in DRUGS.items() for n in (g, info["zh"], *info["aliases"])}, key=len, reverse=True)
_DRUG_IN_TEXT = re.compile(
    "|".join(r"(?<![a-z])" + re.escape(n.lower()) if n.isascii() else re.escape(n) for n in _DRUG_NAMES)
)


def _stated_age(text: str) -> int | None:
    if _infant_months(text) is not None or re.search(r"\bbaby\b|\binfant\b|宝宝|婴儿", text):
        return 0
    for pattern in _AGE_IN_TEXT:
        match = pattern.search(text)
        if match and int(match.group(1)) <= 120:
            return int(match.group(1))
    return None


def _stated_hours(text: str) -> float | None:
    """How long it has lasted where the text says so ("15 minutes ago", "5 days", "半天", "两个小时")."""
    if "半天" in text:
        return 12.0
    for word, digits in _ZH_NUMBERS.items():
        text = text.replace(word + "个小时", digits + "小时").replace(word + "天", digits + "天")
    match = _DURATION_IN_TEXT.search(text)
    if not match:
        return None
    amount = {"half a": 0.5, "half an": 0.5, "a": 1.0, "an": 1.0}.get(match.group(1))
    amount = float(match.group(1)) if amount is None else amount
    unit = match.group(2)
    return amount * next(hours for prefix, hours in _HOURS_PER.items() if unit.startswith(prefix))


@planner(reads_attachments=True)
def screen_red_flags(message: str, lang: str) -> list[PlannedCall]:
    """Run triage on every message that mentions a symptom, so escalation never waits for the model."""
    text = unicodedata.normalize("NFKC", message).lower()
    if not any(_has(text, group) for group in GROUPS if group not in CONTEXT_GROUPS):
        return []
    age, hours = _stated_age(text), _stated_hours(text)
    notes = [] if age is not None else [f"age not stated, {ASSUMED_AGE} assumed"]
    notes += [] if hours is not None else ["duration not stated"]
    arguments = {"symptoms": [message.strip()[:300]], "age_years": ASSUMED_AGE if age is None else age,
                 "duration_hours": 0.0 if hours is None else round(hours, 2)}  # fmt: skip
    return [PlannedCall("triage", arguments, "; ".join(["the message describes symptoms", *notes]))]


@planner(reads_attachments=True)
def screen_drug_pairs(message: str, lang: str) -> list[PlannedCall]:
    """Look up interactions whenever a message names two or more medicines (or alcohol, grapefruit)."""
    text = unicodedata.normalize("NFKC", message).lower()
    named: dict[str, str] = {}
    for match in _DRUG_IN_TEXT.finditer(text):
        named.setdefault(ALIASES[_key(match.group(0))], match.group(0))
    if len(named) < 2:
        return []
    drugs = list(named.values())[:10]
    return [PlannedCall("drug_interactions", {"drugs": drugs}, "the message names several medicines")]
