"""Tools of the social_sentiment pack: aggregate labelled posts, build trend series, parse hashtags.

Posts are plain dicts as in `data/posts.jsonl`: `polarity` (positive/neutral/negative), `intensity`
(1-5), `emotion` (joy/surprise/anger/sadness/fear/disgust/neutral), optional `text` and `date`.
Everything is standard-library Python, linear in the number of posts, and validates its input with
a `ValueError` that names the post (by index and id) and the field.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime
from typing import Literal

from polyglm.scenarios.tooling import PlannedCall, planner, tool

POLARITIES = ("positive", "neutral", "negative")  # same order as `labels.polarity` in scenario.yaml
EMOTIONS = ("joy", "surprise", "anger", "sadness", "fear", "disgust", "neutral")  # `labels.emotion`
INTENSITY_MIN, INTENSITY_MAX = 1, 5  # `labels.intensity` holds the strings "1".."5"
MAX_POSTS = 10_000  # one call summarises a feed page or a day, not a data lake
MAX_TEXT_CHARS = 10_000  # longer "posts" are documents, not posts
MAX_TAG_CHARS = 50  # Weibo caps topic names; anything longer is a stray pair of '#'

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HASH = "#\uff03"  # ASCII '#' and the full-width '＃' typed by Chinese input methods
# Weibo form `#话题#` (needs a CJK character before the closing '#', may hold spaces inside) or the
# single form `#tag` (word characters, so it also takes `#打工人` followed by a space). A '#' glued to a
# Latin letter or digit (C#, url#anchor, &#39;) is not a hashtag; one glued to a CJK character is.
_TAG = re.compile(
    rf"(?<![A-Za-z0-9_&{_HASH}])[{_HASH}]"
    rf"(?:(?=[^{_HASH}\n]*[{_CJK}])(?P<paired>[^{_HASH}\s](?:[^{_HASH}\n]*?[^{_HASH}\s])?)[{_HASH}]"
    rf"|(?P<single>[^\W_][\w-]*))"
)


# ----------------------------------------------------------------------------- validation


def _where(post: dict, index: int) -> str:
    post_id = post.get("id")
    return f"post {index}" + (f" (id {post_id!r})" if isinstance(post_id, str | int) else "")


def _check_posts(posts: object) -> list[dict]:
    """The posts as a list of dicts, or a ValueError saying what is wrong with the container."""
    if not isinstance(posts, list):
        raise ValueError(f"posts must be a list of post objects, got {type(posts).__name__}")
    if not posts:
        raise ValueError("posts is empty; pass at least one labelled post")
    if len(posts) > MAX_POSTS:
        raise ValueError(f"posts holds {len(posts)} items; at most {MAX_POSTS} per call (split by day or topic)")
    for index, post in enumerate(posts):
        if not isinstance(post, dict):
            raise ValueError(f"post {index} must be an object with polarity/intensity/emotion, got {post!r:.60}")
    return posts


def _label(post: dict, index: int, field: str, allowed: tuple[str, ...]) -> str:
    """One categorical label, lower-cased; a ValueError names the post and the allowed values."""
    value = post.get(field)
    if value is None:
        raise ValueError(f"{_where(post, index)} has no `{field}`; every post needs one of {list(allowed)}")
    label = value.strip().lower() if isinstance(value, str) else value
    if label not in allowed:
        raise ValueError(f"{_where(post, index)}: `{field}` must be one of {list(allowed)}, got {value!r}")
    return label


def _intensity(post: dict, index: int) -> int:
    """The 1-5 intensity as an int; accepts 3 or "3", refuses 3.5, True, 0 and 6."""
    value = post.get("intensity")
    if value is None:
        raise ValueError(f"{_where(post, index)} has no `intensity`; give an integer from 1 to 5")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not INTENSITY_MIN <= value <= INTENSITY_MAX:
        raise ValueError(
            f"{_where(post, index)}: `intensity` must be an integer from {INTENSITY_MIN} to {INTENSITY_MAX}, "
            f"got {value!r}"
        )
    return value


def _day(post: dict, index: int) -> str:
    """The post's `date` (ISO date or datetime) reduced to YYYY-MM-DD."""
    value = post.get("date")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{_where(post, index)} has no `date`; give an ISO date such as '2026-10-03'")
    text = value.strip()
    try:
        day = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text).date()
    except ValueError:
        raise ValueError(
            f"{_where(post, index)}: `date` {value!r} is not an ISO date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)"
        ) from None
    return day.isoformat()


def _text(post: dict, index: int) -> str:
    value = post.get("text")
    if not isinstance(value, str):
        raise ValueError(f"{_where(post, index)} has no `text`; hashtags are read from the post text")
    return value


# ----------------------------------------------------------------------------- arithmetic


def _shares(counts: Counter, labels: tuple[str, ...], total: int) -> dict[str, float]:
    return {label: round(counts[label] / total, 4) for label in labels}


def _net(counts: Counter, total: int) -> float:
    """(positive - negative) / total, from -1 (all negative) to 1 (all positive)."""
    return round((counts["positive"] - counts["negative"]) / total, 4) if total else 0.0


def _series_row(key: str, counts: Counter) -> dict:
    total = sum(counts[p] for p in POLARITIES)
    return {"key": key, "total": total, **{p: counts[p] for p in POLARITIES}, "net_sentiment": _net(counts, total)}


def _unique(tags: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(tags))


def _hashtags(text: str) -> list[str]:
    """Hashtags of one text, normalised (case-folded, inner spaces collapsed), in order, without repeats."""
    found = []
    for match in _TAG.finditer(text):
        tag = " ".join((match.group("paired") or match.group("single")).split()).strip("-").casefold()
        if tag and not tag.isdigit() and len(tag) <= MAX_TAG_CHARS:
            found.append(tag)
    return _unique(found)


# ----------------------------------------------------------------------------- tools


@tool(timeout_s=2.0)
def aggregate_sentiment(posts: list[dict]) -> dict:
    """Summarise labelled posts: counts and shares per polarity and per emotion, mean intensity, net sentiment.

    Args:
        posts: Labelled posts, each an object with "polarity" (positive, neutral or negative), "intensity"
            (integer 1-5) and "emotion" (joy, surprise, anger, sadness, fear, disgust or neutral); other
            fields such as "id" or "text" are allowed and ignored. At most 10000 posts.
    """
    checked = _check_posts(posts)
    polarity = Counter(_label(p, i, "polarity", POLARITIES) for i, p in enumerate(checked))
    emotion = Counter(_label(p, i, "emotion", EMOTIONS) for i, p in enumerate(checked))
    intensities = [_intensity(p, i) for i, p in enumerate(checked)]
    total = len(checked)
    return {
        "total": total,
        "polarity_counts": {label: polarity[label] for label in POLARITIES},
        "polarity_shares": _shares(polarity, POLARITIES, total),
        "emotion_counts": {label: emotion[label] for label in EMOTIONS},
        "emotion_shares": _shares(emotion, EMOTIONS, total),
        "dominant_emotion": max(EMOTIONS, key=lambda label: (emotion[label], -EMOTIONS.index(label))),
        "mean_intensity": round(sum(intensities) / total, 2),
        "net_sentiment": _net(polarity, total),
    }


@tool(timeout_s=2.0)
def sentiment_trend(posts: list[dict], by: Literal["hashtag", "day"]) -> dict:
    """Series of polarity counts and net sentiment ((positive - negative) / total) per hashtag or per day.

    By hashtag, each post counts once for every distinct hashtag in its text (both `#tag` and the Weibo
    form `#话题#`); rows are sorted by post count, largest first, and posts without a hashtag are counted
    in "untagged". By day, rows are the dates present, oldest first.

    Args:
        posts: Labelled posts, each an object with "polarity" (positive, neutral or negative) and, by
            hashtag, "text" (the post text) or, by day, "date" (ISO date such as "2026-10-03"). At most
            10000 posts.
        by: "hashtag" for one row per hashtag, "day" for one row per calendar day.
    """
    checked = _check_posts(posts)
    if by not in ("hashtag", "day"):
        raise ValueError(f"by must be 'hashtag' or 'day', got {by!r}")
    buckets: dict[str, Counter] = {}
    untagged = 0
    for index, post in enumerate(checked):
        polarity = _label(post, index, "polarity", POLARITIES)
        keys = _hashtags(_text(post, index)) if by == "hashtag" else [_day(post, index)]
        if not keys:
            untagged += 1
        for key in keys:
            buckets.setdefault(key, Counter())[polarity] += 1
    rows = [_series_row(key, counts) for key, counts in buckets.items()]
    rows.sort(key=(lambda r: (-r["total"], r["key"])) if by == "hashtag" else (lambda r: r["key"]))
    result = {"by": by, "posts": len(checked), "series": rows}
    if by == "hashtag":
        result["untagged"] = untagged
    return result


@tool(timeout_s=1.0)
def extract_hashtags(text: str) -> dict:
    """List the hashtags in a post, both `#tag` and the Weibo form `#话题#`, case-folded, in order, no repeats.

    Args:
        text: The post text (at most 10000 characters).
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"text has {len(text)} characters; at most {MAX_TEXT_CHARS} (one post at a time)")
    tags = _hashtags(text)
    return {"hashtags": tags, "count": len(tags)}


# ----------------------------------------------------------------------------- planners
# Counting is the tools' job ("Do not invent numbers" in the pack's rules), and a small model may never
# emit a call: a question over a fenced JSON list of labelled posts, or about one post's hashtags, is
# recognised here and the tool runs before the model speaks.

_JSON_LIST = re.compile(r"```(?:json)?\s*(\[.*?\])\s*```", re.DOTALL)
_BY_DAY = re.compile(r"day[- ]by[- ]day|by day|per day|daily|each day|按天|每天|逐日|按日", re.IGNORECASE)
_BY_HASHTAG = re.compile(r"hashtag|by topic|per topic|按话题|话题|标签", re.IGNORECASE)
_HASHTAG_QUESTION = re.compile(
    r"which hashtags|what hashtags|list (?:the |its )?hashtags|extract (?:the )?hashtags|"
    r"哪些(?:话题)?标签|哪些话题|提取.{0,6}(?:话题|标签)",
    re.IGNORECASE,
)


def _posts_in(message: str) -> list[dict] | None:
    """The labelled posts of a fenced JSON list in the message (None when there is none, or it is no list
    of objects)."""
    fenced = _JSON_LIST.search(message)
    if fenced is None:
        return None
    try:
        posts = json.loads(fenced.group(1))
    except ValueError:
        return None
    return posts if isinstance(posts, list) and posts and all(isinstance(p, dict) for p in posts) else None


@planner
def plan_post_statistics(message: str, lang: str) -> list[PlannedCall]:
    """Labelled posts in a fenced JSON list: a trend by day or by hashtag when asked for one, otherwise the
    summary (counts, shares, mean intensity, net sentiment)."""
    posts = _posts_in(message)
    if posts is None:
        return []
    question = _JSON_LIST.sub(" ", message)  # the words around the list, not the posts' own text
    by = "day" if _BY_DAY.search(question) else "hashtag" if _BY_HASHTAG.search(question) else None
    if by:
        return [PlannedCall("sentiment_trend", {"posts": posts, "by": by}, f"labelled posts, a trend by {by}")]
    return [PlannedCall("aggregate_sentiment", {"posts": posts}, "labelled posts to summarise")]


@planner
def plan_hashtags(message: str, lang: str) -> list[PlannedCall]:
    """ "Which hashtags does this post use?" with the post on the lines below (or after a colon)."""
    question, _, rest = message.strip().partition("\n")
    if _JSON_LIST.search(message) or not _HASHTAG_QUESTION.search(question):
        return []
    after_colon = re.split(r"[:：]", question, maxsplit=1)[1:]  # "Which hashtags does this use: ..."
    post = rest.strip() or (after_colon[0].strip() if after_colon else "")
    if not post:
        return []
    return [PlannedCall("extract_hashtags", {"text": post}, "a post whose hashtags were asked for")]
