"""Quiz questions: one family of bilingual templates, filled in by each topic's draw function.

The words live in `data/quiz_questions.json` (template group -> template name -> en, zh, answer, the
drawn number that marks it, tolerance); the numbers are drawn here. A topic's draw function takes the
seeded generator and a difficulty, draws its numbers (always in the same order: a quiz is rebuilt from
its seed, so a changed order changes the questions behind every quiz id) and names the template they
fill in; `question` renders it. Templates use `str.format` fields over the drawn numbers: a plain field
prints a number as a textbook does (4.0 as 4, 2.3456 as 2.35, a fraction as 3/4), a field with a format
spec (`{length:.2f}`) prints exactly that.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sympy as sp

from .checker import textbook

Question = dict  # {"en", "zh", "answer" (display), "values" (list[float]), "tol" (float)}
Numbers = dict[str, Any]  # what a draw function drew, by the names its templates use
Draw = Callable[[random.Random, str], tuple[str, Numbers]]  # (rng, difficulty) -> (template name, numbers)
G = 10  # N/kg, as in most middle-school textbooks
EXACT = 1e-6  # the default tolerance: the answer is a whole number or a short decimal
WORDS_FILE = Path(__file__).resolve().parents[1] / "data" / "quiz_questions.json"


@dataclass(frozen=True)
class Template:
    """One kind of question: its wording in both languages, the answer shown to the tutor, and what marks it."""

    en: str
    zh: str
    answer: str
    value: str  # the drawn number (or list of numbers) a right answer must contain
    tol: float = EXACT  # relative tolerance when marking: looser where the student rounds


@dataclass(frozen=True)
class Topic:
    """A quiz topic: how its numbers are drawn at a difficulty, and the templates they fill in."""

    draw: Draw
    templates: Mapping[str, Template]


def _num(v: float) -> str:
    """Print 4.0 as 4 and 2.3456 as 2.35."""
    return str(round(v)) if abs(v - round(v)) < 1e-9 else f"{v:.2f}".rstrip("0").rstrip(".")


def _frac(v: sp.Rational) -> str:
    """Print 3/4 as 3/4 and 4/1 as 4."""
    return str(v) if v.q != 1 else str(v.p)


class _Printer(string.Formatter):
    """`str.format` that prints plain number fields the textbook way (see the module docstring)."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec:
            return format(value, format_spec)
        if isinstance(value, sp.Rational):
            return _frac(value)
        return _num(value) if isinstance(value, int | float) else str(value)


_PRINTER = _Printer()
TEMPLATES = {  # group (a topic, or "equations") -> template name -> Template
    group: {name: Template(**fields) for name, fields in templates.items()}
    for group, templates in json.loads(WORDS_FILE.read_text(encoding="utf-8")).items()
}


def question(topic: Topic, rng: random.Random, level: str) -> Question:
    """Draw one question of `topic` at difficulty `level`."""
    name, numbers = topic.draw(rng, level)
    template = topic.templates[name]
    value = numbers[template.value]
    return {
        "en": _PRINTER.format(template.en, **numbers),
        "zh": _PRINTER.format(template.zh, **numbers),
        "answer": _PRINTER.format(template.answer, **numbers),
        "values": [float(v) for v in (value if isinstance(value, list) else [value])],
        "tol": template.tol,
    }


# ----------------------------------------------------------------------------- equations


def _equation(equation: str, roots: list) -> Numbers:
    """Numbers for the "solve" templates ("solve_fractions" marks 0.33 right for 1/3)."""
    return {"equation": equation, "roots": roots, "solutions": " or ".join(_PRINTER.format("x = {}", r) for r in roots)}


def _draw_linear(rng: random.Random, level: str) -> tuple[str, Numbers]:
    x = rng.choice([i for i in range(-9, 13) if i]) if level != "easy" else rng.randint(1, 12)
    a, b = rng.randint(2, 9), rng.randint(1, 20)
    if level == "easy":
        return "solve", _equation(f"{a}x + {b} = {a * x + b}", [x])
    if level == "medium":
        c = rng.randint(1, a - 1) if a > 2 else 1
        d = a * x + b - c * x
        return "solve", _equation(f"{a}x + {b} = {c if c > 1 else ''}x + {d}".replace("+ -", "- "), [x])
    den = rng.choice([2, 3, 4, 5])
    k = rng.randint(1, 6)
    if k % 2:  # sometimes make the answer a fraction
        return "solve_fractions", _equation(f"{den}x - {k} = {b}", [sp.Rational(b + k, den)])
    return "solve_fractions", _equation(f"({a}x + {b})/{den} = {_frac(sp.Rational(a * x + b, den))}", [sp.Rational(x)])


def _draw_quadratic(rng: random.Random, level: str) -> tuple[str, Numbers]:
    if level == "easy" and rng.random() < 0.5:
        k = rng.randint(1, 15)
        return "solve", _equation(f"x^2 = {k * k}", [k, -k])
    if level == "easy":
        p, q = rng.sample(range(1, 10), 2)
        return "solve", _equation(f"(x - {p})(x + {q}) = 0", [p, -q])
    p, q = rng.sample([i for i in range(-9, 10) if i], 2)
    a = 1 if level == "medium" else rng.randint(2, 3)
    x = sp.Symbol("x")
    expr = sp.expand(a * (x - p) * (x - q)) if level == "medium" else sp.expand((a * x - p) * (x - q))
    return "solve_fractions", _equation(f"{textbook(expr)} = 0", sorted(sp.solve(expr, x)))


# ----------------------------------------------------------------------------- number and chance


def _draw_fractions(rng: random.Random, level: str) -> tuple[str, Numbers]:
    if level == "easy":
        pct, base = rng.choice([10, 20, 25, 50, 75, 5, 40]), rng.randint(2, 20) * 20
        return "percent_of", {"pct": pct, "base": base, "value": pct * base / 100}
    if level == "medium":
        b, d = rng.sample([2, 3, 4, 5, 6, 8], 2)
        a = rng.choice([n for n in range(1, b) if math.gcd(n, b) == 1])
        c = rng.choice([n for n in range(1, d) if math.gcd(n, d) == 1])
        return "fraction_sum", {"a": a, "b": b, "c": c, "d": d, "total": sp.Rational(a, b) + sp.Rational(c, d)}
    price, pct = rng.randint(4, 30) * 10, rng.choice([10, 20, 25, 30, 40])
    return "original_price", {"pct": pct, "price": price, "sale": price * (100 - pct) / 100}


def _draw_ratios(rng: random.Random, level: str) -> tuple[str, Numbers]:
    if level == "easy":
        a, b = rng.sample(range(1, 8), 2)
        total = (a + b) * rng.randint(2, 12)
        return "share_in_two", {"a": a, "b": b, "total": total, "parts": [total * k // (a + b) for k in (a, b)]}
    if level == "medium":
        a, b, c = rng.sample(range(1, 7), 3)
        total = (a + b + c) * rng.randint(3, 15)
        parts = [total * k // (a + b + c) for k in (a, b, c)]
        return "share_in_three", {"a": a, "b": b, "c": c, "total": total, "parts": parts}
    scale, cm = rng.choice([25000, 50000, 100000, 200000]), rng.randint(2, 15)
    return "map_scale", {"scale": scale, "cm": cm, "km": cm * scale / 100000}


def _draw_probability(rng: random.Random, level: str) -> tuple[str, Numbers]:
    red, blue = rng.randint(1, 9), rng.randint(1, 9)
    if level == "easy":
        return "one_red", {"red": red, "blue": blue, "p": sp.Rational(red, red + blue)}
    if level == "medium":
        sides, k = rng.choice([6, 8, 10, 12, 20]), rng.randint(2, 5)
        return "die_above", {"sides": sides, "k": k, "p": sp.Rational(sides - k, sides)}
    red = max(red, 2)
    p = sp.Rational(red, red + blue) * sp.Rational(red - 1, red + blue - 1)
    return "two_red", {"red": red, "blue": blue, "p": p}


# ----------------------------------------------------------------------------- geometry

_TRIPLES = [(3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (9, 40, 41)]


def _draw_pythagoras(rng: random.Random, level: str) -> tuple[str, Numbers]:
    a, b, c = rng.choice(_TRIPLES)
    k = rng.randint(1, 5)
    sides = {"a": a * k, "b": b * k, "c": c * k}
    if level != "hard":
        return "hypotenuse" if level == "easy" else "other_leg", sides
    h, d = rng.randint(3, 12), rng.randint(1, 5)
    length = math.sqrt(h * h + d * d)
    return "ladder", {"h": h, "d": d, "length": length, "rounded": round(length, 2)}


def _draw_area_volume(rng: random.Random, level: str) -> tuple[str, Numbers]:
    if level == "easy":
        base, height = rng.randint(3, 20), rng.randint(2, 12) * 2
        return "triangle_area", {"base": base, "height": height, "area": base * height / 2}
    r = rng.randint(2, 20)
    if level == "medium" and rng.random() < 0.5:
        length, width, height = rng.randint(2, 15), rng.randint(2, 10), rng.randint(2, 10)
        return "cuboid_volume", {"length": length, "width": width, "height": height, "volume": length * width * height}
    if level == "medium":
        return "circle_area", {"r": r, "area": 3.14 * r * r}
    h = rng.randint(3, 15)
    return "cylinder_volume", {"r": r, "h": h, "volume": 3.14 * r * r * h}


# ----------------------------------------------------------------------------- physics


def _draw_speed(rng: random.Random, level: str) -> tuple[str, Numbers]:
    if level == "easy":
        t, v = rng.randint(2, 6), rng.randint(3, 30) * 5
        return "average_speed", {"t": t, "v": v, "distance": v * t}
    if level == "medium":
        ms = rng.randint(1, 40)
        return "to_metres_per_second" if rng.random() < 0.5 else "to_km_per_hour", {"ms": ms, "kmh": ms * 3.6}
    u, a, t = rng.randint(0, 10), rng.randint(1, 5), rng.randint(2, 8)
    return "acceleration", {"u": u, "a": a, "t": t, "v": u + a * t}


def _draw_density(rng: random.Random, level: str) -> tuple[str, Numbers]:
    if level == "easy":
        rho, volume = rng.choice([0.8, 1.0, 2.7, 7.9, 11.3, 19.3]), rng.randint(2, 20) * 5
        return "density", {"rho": rho, "volume": volume, "mass": rho * volume}
    if level == "medium":
        rho, volume = rng.choice([0.8, 0.9, 1.0, 2.7, 7.9, 8.9, 11.3]), rng.randint(2, 30) * 10
        return "mass", {"rho": rho, "rho_si": rho * 1000, "volume": volume, "mass": rho * volume}
    before, rise, rho = rng.randint(40, 60), rng.randint(5, 20), rng.choice([2.7, 7.9, 8.9])
    return "stone_density", {"before": before, "after": before + rise, "rho": rho, "mass": rho * rise}


def _draw_pressure(rng: random.Random, level: str) -> tuple[str, Numbers]:
    if level == "easy":
        area, p = rng.choice([0.5, 1, 2, 4]), rng.randint(2, 40) * 100
        return "pressure", {"area": area, "p": p, "force": p * area}
    if level == "medium":
        mass, cm2 = rng.randint(40, 70), rng.choice([200, 250, 400, 500])
        return "standing", {"mass": mass, "cm2": cm2, "g": G, "p": mass * G / (cm2 / 10000)}
    depth = rng.randint(2, 50)
    return "under_water", {"depth": depth, "g": G, "p": 1000 * G * depth}


def _draw_ohms_law(rng: random.Random, level: str) -> tuple[str, Numbers]:
    if level == "easy":
        r, i = rng.choice([2, 4, 5, 10, 20]), rng.choice([0.2, 0.5, 1, 1.5, 2])
        return "current", {"r": r, "i": i, "voltage": r * i}
    r1, r2 = rng.randint(1, 10) * 2, rng.randint(1, 10) * 2
    if level == "medium":
        v = rng.choice([6, 12, 24])
        i = v / (r1 + r2)
        return "series_current", {"r1": r1, "r2": r2, "v": v, "i": i, "rounded": round(i, 2)}
    total = r1 * r2 / (r1 + r2)
    return "parallel_resistance", {"r1": r1, "r2": r2, "total": total, "rounded": round(total, 2)}


def _draw_work_energy_power(rng: random.Random, level: str) -> tuple[str, Numbers]:
    force, s = rng.randint(2, 50) * 10, rng.randint(2, 20)
    if level == "easy":
        return "work", {"force": force, "s": s, "work": force * s}
    if level == "medium":
        t = rng.choice([2, 4, 5, 10])
        return "power", {"work": force * s, "t": t, "power": force * s / t}
    m, v = rng.randint(1, 20), rng.randint(2, 12)
    return "kinetic_energy", {"m": m, "v": v, "energy": 0.5 * m * v * v}


def _draw_newtons_laws(rng: random.Random, level: str) -> tuple[str, Numbers]:
    m, a = rng.randint(1, 20), rng.randint(1, 6)
    if level == "easy":
        return "net_force", {"m": m, "a": a, "force": m * a}
    friction = rng.randint(1, 10) * 5
    if level == "medium":
        return "with_friction", {"m": m, "a": a, "friction": friction, "push": m * a + friction}
    m = rng.randint(1, 80)
    return "moon_weight", {"m": m, "weight": m * 1.6}


# ----------------------------------------------------------------------------- topics and their names

_DRAWS: dict[str, Draw] = {
    "linear_equations": _draw_linear,
    "quadratic_equations": _draw_quadratic,
    "fractions_percentages": _draw_fractions,
    "ratios": _draw_ratios,
    "pythagoras": _draw_pythagoras,
    "area_volume": _draw_area_volume,
    "probability": _draw_probability,
    "speed": _draw_speed,
    "density": _draw_density,
    "pressure": _draw_pressure,
    "ohms_law": _draw_ohms_law,
    "work_energy_power": _draw_work_energy_power,
    "newtons_laws": _draw_newtons_laws,
}
_TEMPLATE_GROUP = {"linear_equations": "equations", "quadratic_equations": "equations"}  # both: "Solve ..."
TOPICS: dict[str, Topic] = {
    topic: Topic(draw, TEMPLATES[_TEMPLATE_GROUP.get(topic, topic)]) for topic, draw in _DRAWS.items()
}
TOPIC_ALIASES = {
    "linear": "linear_equations",
    "一元一次方程": "linear_equations",
    "方程": "linear_equations",
    "quadratic": "quadratic_equations",
    "一元二次方程": "quadratic_equations",
    "fractions": "fractions_percentages",
    "percentages": "fractions_percentages",
    "分数": "fractions_percentages",
    "百分数": "fractions_percentages",
    "分数与百分数": "fractions_percentages",
    "ratio": "ratios",
    "比例": "ratios",
    "比": "ratios",
    "勾股定理": "pythagoras",
    "pythagorean_theorem": "pythagoras",
    "area": "area_volume",
    "volume": "area_volume",
    "面积": "area_volume",
    "体积": "area_volume",
    "面积与体积": "area_volume",
    "概率": "probability",
    "velocity": "speed",
    "acceleration": "speed",
    "速度": "speed",
    "速度与加速度": "speed",
    "密度": "density",
    "压强": "pressure",
    "ohm": "ohms_law",
    "circuits": "ohms_law",
    "欧姆定律": "ohms_law",
    "电路": "ohms_law",
    "work": "work_energy_power",
    "energy": "work_energy_power",
    "power": "work_energy_power",
    "功和功率": "work_energy_power",
    "功": "work_energy_power",
    "机械能": "work_energy_power",
    "newton": "newtons_laws",
    "forces": "newtons_laws",
    "牛顿定律": "newtons_laws",
    "力": "newtons_laws",
    "牛顿运动定律": "newtons_laws",
}


def canonical_topic(topic: str) -> str:
    """The topic key for a name a tutor or student might use ("Ohm's law", "勾股定理", "fractions")."""
    if not isinstance(topic, str) or not topic.strip():
        raise ValueError("topic is empty")
    key = re.sub(r"[\s\-]+", "_", topic.strip().lower().replace("'", "").replace("’", "")).strip("_")
    key = TOPIC_ALIASES.get(key, TOPIC_ALIASES.get(key.removesuffix("s"), key))
    if key not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; choose one of: {', '.join(TOPICS)}")
    return key
