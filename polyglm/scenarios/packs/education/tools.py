"""Tools of the education pack: a sympy answer checker, a quiz generator and a quiz grader.

Nothing here calls `eval` on user text. Maths is parsed by `sympy.parse_expr` after a character and
word whitelist, with an empty `__builtins__`, only the sympy constructors it needs, one Symbol per
Latin letter, and a small set of transformations (numbers, implicit multiplication, `^` as power).
Quizzes are rebuilt deterministically from their id (topic-difficulty-count-seed); quizzes and
grades are stored in SQLite under `state_dir("education")` with parameterised SQL.
"""

from __future__ import annotations

import json
import keyword
import math
import random
import re
import sqlite3
import string
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import sympy as sp
from sympy.parsing.sympy_parser import auto_number, convert_xor, implicit_multiplication, parse_expr

from polyglm.scenarios.tooling import PlannedCall, planner, state_dir, tool

PACK = "education"
MAX_INPUT_CHARS = 200  # longer "problems" are not middle-school algebra; refuse early
MAX_EXPONENT = 12  # 9^9^9 would hang sympy: powers must have a small literal exponent
MAX_DIGITS = 12  # digits in one number literal
FUNCTIONS = {"sqrt": sp.sqrt, "pi": sp.pi, "abs": sp.Abs}

_TRANSFORMS = (auto_number, implicit_multiplication, convert_xor)
_GLOBALS = {
    "Integer": sp.Integer,
    "Float": sp.Float,
    "Rational": sp.Rational,
    "Add": sp.Add,
    "Mul": sp.Mul,
    "Pow": sp.Pow,
    "__builtins__": {},
}
_LOCALS = {c: sp.Symbol(c) for c in string.ascii_letters} | FUNCTIONS
_ALLOWED_CHARS = re.compile(r"^[0-9A-Za-z+\-*/^().=\s]*$")
_VERB = re.compile(
    r"^\s*(?P<verb>solve|simplify|expand|factori[sz]e|factor|evaluate|calculate|compute|work out|check|"
    r"解方程|求解|解|化简|展开|因式分解|分解因式|计算|求值)\s*[:：]?\s*",
    re.IGNORECASE,
)
_MODES = {
    "expand": "expand",
    "展开": "expand",
    "factor": "factor",
    "factorise": "factor",
    "factorize": "factor",
    "因式分解": "factor",
    "分解因式": "factor",
}
_NO_SOLUTION = {"no solution", "no real solution", "no real solutions", "none", "无解", "无实数解", "没有解", "∅"}
_ANSWER_SPLIT = re.compile(r"\s*(?:,|;|，|；|、|\bor\b|\band\b|或者|或|和)\s*", re.IGNORECASE)
_SYSTEM_SPLIT = re.compile(r"\s*(?:;|；|\n|,(?=[^=]*=)|，(?=[^=]*=))\s*")


# ----------------------------------------------------------------------------- safe parsing


def _normalise(text: str) -> str:
    """Map school notation (×, ÷, −, ², full-width characters, %) onto the ASCII the parser accepts."""
    text = text.replace("²", "^2").replace("³", "^3")
    text = re.sub(r"√\s*(\d+(?:\.\d+)?|[A-Za-z])", r"sqrt(\1)", text).replace("√", "sqrt")
    text = unicodedata.normalize("NFKC", text)
    for old, new in (
        ("×", "*"),
        ("·", "*"),
        ("÷", "/"),
        ("−", "-"),
        ("–", "-"),
        ("π", "pi"),
        ("±", "+-"),
        ("%", "/100"),
    ):
        text = text.replace(old, new)
    text = re.sub(r"\bof\b", "*", text, flags=re.IGNORECASE)
    # a written fraction is one number: 3/4 ÷ 3/8 means (3/4) / (3/8), as on paper, not ((3/4)/3)/8
    text = re.sub(r"(?<![\d.])(\d+)\s*/\s*(\d+)(?![\d.])", r"(\1/\2)", text)
    return text.strip().rstrip("?？。.!！ ")


def _check_words(text: str) -> str:
    """Reject unknown words and ambiguous `x2`; split short letter runs such as `xy` into `x*y`."""

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        if word in FUNCTIONS or len(word) == 1:
            return word
        if keyword.iskeyword(word) or len(word) > 3 or not word.islower():
            raise ValueError(f"unknown word {word!r}: use single-letter unknowns (x, y) and sqrt( ), pi, abs( )")
        return "*".join(word)

    if re.search(r"[A-Za-z]\d", text):
        raise ValueError("ambiguous term like 'x2': write x^2 for a power or 2x for a product")
    return re.sub(r"[A-Za-z]+", fix, text)


def _parse(text: str, evaluate: bool = True) -> sp.Expr:
    """Parse one maths expression safely; raise ValueError with a readable reason if it is not maths."""
    if not text.strip():
        raise ValueError("empty expression")
    if "=" in text:
        raise ValueError(f"{text.strip()!r} is an equation where a value or expression was expected")
    if not _ALLOWED_CHARS.match(text):
        bad = sorted({c for c in text if not _ALLOWED_CHARS.match(c)})
        raise ValueError(f"unsupported characters {''.join(bad)!r}: use digits, letters, + - * / ^ ( ) and =")
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0:
        raise ValueError(f"brackets do not match in {text.strip()!r}")
    if re.search(r"(?<!\d)\.|\.(?!\d)", text):
        raise ValueError("a '.' may only appear inside a decimal number such as 2.5")
    if any(len(n) > MAX_DIGITS for n in re.findall(r"\d+", text)):
        raise ValueError(f"numbers longer than {MAX_DIGITS} digits are not supported")
    text = _check_words(text)
    expr = _sympy(text, evaluate=False)
    if not isinstance(expr, sp.Expr):
        raise ValueError(f"{text!r} is not a maths expression")
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Pow) and not (node.exp.is_Number and abs(node.exp) <= MAX_EXPONENT):
            raise ValueError(f"exponents must be small numbers (at most {MAX_EXPONENT}), got {node.exp}")
    if not evaluate:
        return expr
    value = _sympy(text, evaluate=True)
    if value.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise ValueError(f"{text!r} divides by zero or is undefined")
    return sp.nsimplify(value, rational=True) if value.has(sp.Float) else value


def _sympy(text: str, evaluate: bool) -> sp.Basic:
    """parse_expr with the whitelisted names only (no builtins); any failure becomes a ValueError."""
    try:
        return parse_expr(
            text, local_dict=dict(_LOCALS), global_dict=dict(_GLOBALS), transformations=_TRANSFORMS, evaluate=evaluate
        )
    except Exception as exc:  # sympy raises many types on malformed text; all of them mean "not maths"
        raise ValueError(f"could not read {text!r} as maths ({type(exc).__name__})") from None


def _fmt(expr: sp.Basic) -> str:
    """Print like a textbook: x^2, 2x (no `**`, no `*` between a number and a letter)."""
    text = str(expr).replace("**", "^").replace(")*(", ")(")
    return re.sub(r"(\b\d+|\b[A-Za-z])\*(?=[A-Za-z(])", r"\1", text)


def _decimal(value: sp.Expr) -> str:
    """A short decimal for a number, or '' when the exact form already is one."""
    if value.is_Integer or not value.is_number or not value.is_real:
        return ""
    return f"{float(value):.4g}"


# ----------------------------------------------------------------------------- equations


def _split_problem(problem: str) -> tuple[str, str]:
    """Strip a leading instruction word ("solve", "化简", …) and return (mode, text)."""
    if len(problem) > MAX_INPUT_CHARS:
        raise ValueError(f"problem is longer than {MAX_INPUT_CHARS} characters")
    match = _VERB.match(problem)
    mode = "default"
    if match:
        mode = _MODES.get(match.group("verb").lower(), "default")
        problem = problem[match.end() :]
    return mode, problem


def _parse_equation(text: str) -> sp.Eq:
    left, sep, right = text.partition("=")
    if not sep or "=" in right:
        raise ValueError(f"{text!r} must contain exactly one '='")
    lhs, rhs = _parse(left), _parse(right)
    return sp.Eq(lhs, rhs, evaluate=False)


def _answer_values(answer: str, unknowns: list[sp.Symbol]) -> dict[sp.Symbol, list[sp.Expr]] | None:
    """Read "x=4", "4", "x=2 or x=-3", "x₁=2, x₂=3", "±3", "无解" into {symbol: [values]} (None = no solution)."""
    text = _normalise(answer)
    if text.lower() in _NO_SOLUTION or answer.strip() in _NO_SOLUTION:
        return None
    values: dict[sp.Symbol, list[sp.Expr]] = {s: [] for s in unknowns}
    for part in filter(None, _ANSWER_SPLIT.split(text)):
        label, sep, value = part.rpartition("=")
        symbol = unknowns[0]
        if sep:
            name = re.match(r"^\s*([A-Za-z])\s*_?\d*\s*$", label)
            if not name or sp.Symbol(name.group(1)) not in values:
                raise ValueError(f"answer part {part!r} names an unknown that is not in the problem")
            symbol = sp.Symbol(name.group(1))
        elif len(unknowns) > 1:
            raise ValueError("with several unknowns write each value with its name, e.g. 'x=6, y=4'")
        signs = ("+", "-") if value.strip().startswith("+-") else ("",)
        value = value.strip().removeprefix("+-")
        for sign in signs:
            values[symbol].append(_parse(f"{sign}({value})"))
    if not any(values.values()):
        raise ValueError("the answer is empty")
    return values


def _same(a: sp.Expr, b: sp.Expr) -> bool:
    return sp.simplify(a - b) == 0


def _same_set(given: list[sp.Expr], expected: list[sp.Expr]) -> bool:
    if len(given) != len(expected):
        return False
    remaining = list(expected)
    for g in given:
        hit = next((e for e in remaining if _same(g, e)), None)
        if hit is None:
            return False
        remaining.remove(hit)
    return True


def _linear_steps(eq: sp.Eq, x: sp.Symbol) -> list[str]:
    poly = sp.Poly(sp.expand(eq.lhs - eq.rhs), x)
    a, b = poly.all_coeffs()
    steps = [f"collect the {x} terms on one side and the numbers on the other: {_fmt(a * x)} = {_fmt(-b)}"]
    if a != 1:
        steps.append(f"divide both sides by {_fmt(a)}: {x} = {_fmt(sp.nsimplify(-b / a))}")
    return steps


def _quadratic_steps(eq: sp.Eq, x: sp.Symbol) -> list[str]:
    expr = sp.expand(eq.lhs - eq.rhs)
    a, b, c = sp.Poly(expr, x).all_coeffs()
    steps = [f"standard form a{x}^2 + b{x} + c = 0: {_fmt(expr)} = 0 (a = {a}, b = {b}, c = {c})"]
    disc = sp.simplify(b**2 - 4 * a * c)
    steps.append(f"discriminant b^2 - 4ac = {_fmt(disc)}")
    factored = sp.factor(expr)
    if factored != expr and (factored.is_Mul or factored.is_Pow):
        steps.append(f"factorise: {_fmt(factored)} = 0, so each factor can be 0")
    elif disc >= 0:
        steps.append(f"quadratic formula: {x} = (-b ± sqrt(b^2 - 4ac)) / (2a)")
    if disc < 0:
        steps.append("the discriminant is negative, so there is no real solution")
    return steps


def _check_equation(text: str, answer: str) -> dict:
    eq = _parse_equation(text)
    unknowns = sorted(eq.free_symbols, key=str)
    if not unknowns:
        raise ValueError(f"{text!r} has no unknown to solve for")
    if len(unknowns) > 1:
        names = ", ".join(map(str, unknowns))
        raise ValueError(
            f"one equation with {len(unknowns)} unknowns ({names}): give one equation per unknown, separated by ';'"
        )
    x = unknowns[0]
    expr = sp.expand(eq.lhs - eq.rhs)
    steps = [f"equation: {_fmt(eq.lhs)} = {_fmt(eq.rhs)}"]
    if expr == 0:
        return {
            "kind": "equation",
            "expected": "every number is a solution (identity)",
            "steps": steps,
            "correct": answer.strip().lower() in {"all", "all real numbers", "任意实数", "无数解"},
        }
    degree = sp.degree(expr, x) if expr.is_polynomial(x) else None
    if degree == 1:
        steps += _linear_steps(eq, x)
    elif degree == 2:
        steps += _quadratic_steps(eq, x)
    else:
        steps.append(f"rearrange to one side: {_fmt(sp.factor(expr))} = 0")
    solutions = [s for s in sp.solve(expr, x) if s.is_real]
    shown = [_fmt(s.evalf(6)) if s.has(sp.CRootOf) else _fmt(s) for s in solutions]  # no closed form: decimals
    expected = " or ".join(f"{x} = {s}" for s in shown) or "no real solution"
    given = _answer_values(answer, [x])
    if given is None:
        correct = not solutions
    else:
        correct = _same_set(given[x], solutions)
        for value in given[x][:3]:
            left, right = eq.lhs.subs(x, value), eq.rhs.subs(x, value)
            verdict = "equal, it works" if _same(left, right) else "not equal, so it is not a solution"
            steps.append(
                f"check {x} = {_fmt(value)}: left side = {_fmt(sp.simplify(left))}, "
                f"right side = {_fmt(sp.simplify(right))} ({verdict})"
            )
    return {"kind": "equation", "expected": expected, "steps": steps, "correct": correct}


def _check_system(parts: list[str], answer: str) -> dict:
    eqs = [_parse_equation(p) for p in parts]
    unknowns = sorted(set().union(*(e.free_symbols for e in eqs)), key=str)
    if len(unknowns) != len(eqs) or len(eqs) > 3:
        raise ValueError(
            f"a system needs as many equations as unknowns (at most 3); got {len(eqs)} equations "
            f"and unknowns {', '.join(map(str, unknowns)) or 'none'}"
        )
    solutions = sp.solve(eqs, unknowns, dict=True)
    steps = [f"equation {i + 1}: {_fmt(e.lhs)} = {_fmt(e.rhs)}" for i, e in enumerate(eqs)]
    steps.append("eliminate one unknown (add/subtract the equations or substitute), solve, then back-substitute")
    if len(solutions) != 1 or len(solutions[0]) != len(unknowns):
        expected = "no unique solution"
        return {"kind": "system", "expected": expected, "steps": steps, "correct": answer.strip() in _NO_SOLUTION}
    sol = solutions[0]
    expected = ", ".join(f"{s} = {_fmt(sol[s])}" for s in unknowns)
    given = _answer_values(answer, unknowns)
    correct = given is not None and all(len(given[s]) == 1 and _same(given[s][0], sol[s]) for s in unknowns)
    if given is not None and all(len(given[s]) == 1 for s in unknowns):
        point = {s: given[s][0] for s in unknowns}
        for i, e in enumerate(eqs):
            ok = _same(e.lhs.subs(point), e.rhs.subs(point))
            steps.append(f"check equation {i + 1} with your values: {'holds' if ok else 'does not hold'}")
    return {"kind": "system", "expected": expected, "steps": steps, "correct": correct}


# ----------------------------------------------------------------------------- expressions


def _fraction_sum_steps(raw: sp.Expr) -> list[str]:
    """For a sum of plain fractions, show the common-denominator step."""
    terms = [t.doit() for t in sp.Add.make_args(raw)]
    if len(terms) < 2 or not all(t.is_Rational for t in terms) or all(t.q == 1 for t in terms):
        return []
    lcd = math.lcm(*(int(t.q) for t in terms))
    rewritten = " + ".join(f"{int(t.p * lcd // t.q)}/{lcd}" for t in terms).replace("+ -", "- ")
    return [f"common denominator {lcd}: {rewritten}"]


def _is_factored(raw: sp.Expr) -> bool:
    for factor in sp.Mul.make_args(raw):
        base = factor.base if isinstance(factor, sp.Pow) else factor
        base = sp.expand(base.doit())
        if base.is_Add and not sp.factor(base).is_Add:
            return False
    return True


def _is_expanded(raw: sp.Expr) -> bool:
    for node in sp.preorder_traversal(raw):
        if isinstance(node, sp.Mul) and any(a.is_Add for a in node.args):
            return False
        if isinstance(node, sp.Pow) and node.base.is_Add and node.exp.is_Integer and node.exp > 1:
            return False
    return True


def _check_expression(text: str, answer: str, mode: str, shown: str) -> dict:
    raw = _parse(text, evaluate=False)
    value = _parse(text)
    given_text = re.sub(r"^\s*(?:[A-Za-z]\s*)?=", "", _normalise(answer))  # "= 11/12" or "x = 2" -> the value
    given_raw = _parse(given_text, evaluate=False)
    given = _parse(given_text)
    steps = [f"expression: {shown}"]
    if not value.free_symbols:
        steps += _fraction_sum_steps(raw)
        exact = sp.nsimplify(value)
        approx = _decimal(exact)
        steps.append(f"exact value: {_fmt(exact)}" + (f" ≈ {approx}" if approx else ""))
        expected = _fmt(exact) + (f" (≈ {approx})" if approx else "")
        if _same(given, exact):
            fraction = re.fullmatch(r"\s*-?\(?(\d+)\)?\s*/\s*\(?(\d+)\)?\s*", given_text)
            if fraction and math.gcd(int(fraction.group(1)), int(fraction.group(2))) > 1:
                return {
                    "kind": "arithmetic",
                    "expected": expected,
                    "steps": steps,
                    "correct": False,
                    "status": "equivalent_not_simplified",
                    "note": "right value, but the fraction can be reduced",
                }
            return {"kind": "arithmetic", "expected": expected, "steps": steps, "correct": True, "status": "correct"}
        decimals = re.fullmatch(r"\s*-?\d+\.(\d+)\s*", given_text)
        if decimals and abs(float(given - exact)) <= 0.5 * 10 ** -len(decimals.group(1)) + 1e-12:
            note = f"correct to {len(decimals.group(1))} decimal places; the exact value is {_fmt(exact)}"
            return {
                "kind": "arithmetic",
                "expected": expected,
                "steps": steps,
                "correct": True,
                "status": "correct",
                "note": note,
            }
        return {"kind": "arithmetic", "expected": expected, "steps": steps, "correct": False, "status": "incorrect"}
    target = {"expand": sp.expand, "factor": sp.factor}.get(mode, sp.simplify)(value)
    if mode == "factor":
        steps.append(f"take out common factors and use patterns such as a^2 - b^2 = (a - b)(a + b): {_fmt(target)}")
    elif mode == "expand":
        steps.append(f"multiply out every bracket and collect like terms: {_fmt(target)}")
    else:
        num, den = sp.fraction(sp.together(value))
        if den != 1:
            steps.append(f"factorise top and bottom: ({_fmt(sp.factor(num))}) / ({_fmt(sp.factor(den))})")
        steps.append(f"simplified: {_fmt(target)}")
    result = {"kind": "expression", "mode": mode, "expected": _fmt(target), "steps": steps}
    if not _same(given, value):
        return result | {"correct": False, "status": "incorrect"}
    form_ok = {"factor": _is_factored, "expand": _is_expanded}.get(mode)
    if form_ok is not None and not form_ok(given_raw):
        return result | {
            "correct": False,
            "status": "equivalent_not_simplified",
            "note": f"equivalent, but not in {mode}ed form",
        }
    if form_ok is None and sp.count_ops(given) > sp.count_ops(target):
        return result | {
            "correct": False,
            "status": "equivalent_not_simplified",
            "note": "equivalent, but it can be simplified further",
        }
    return result | {"correct": True, "status": "correct"}


@tool(timeout_s=5.0)
def check_answer(problem: str, answer: str) -> dict:
    """Check a student's answer to an algebra or arithmetic problem and show the working.

    Args:
        problem: An equation to solve ("2x+3=11", "x^2-5x+6=0", "x+y=10; x-y=2") or an expression to
            evaluate or simplify ("3/4 + 1/6", "simplify (x^2-1)/(x-1)", "factor x^2-9", "expand (x+2)^2").
        answer: The student's answer, e.g. "x=4", "x=2 or x=3", "x=6, y=4", "11/12", "x+1", "无解".
    """
    if not isinstance(problem, str) or not isinstance(answer, str):
        raise ValueError("problem and answer must both be text")
    if not answer.strip():
        raise ValueError("answer is empty: give the student's answer, e.g. 'x=4'")
    if len(answer) > MAX_INPUT_CHARS:
        raise ValueError(f"answer is longer than {MAX_INPUT_CHARS} characters")
    mode, shown = _split_problem(problem)
    text = _normalise(shown)
    if "=" in text:
        parts = [p for p in _SYSTEM_SPLIT.split(text) if p]
        result = _check_system(parts, answer) if len(parts) > 1 else _check_equation(parts[0], answer)
        result["status"] = "correct" if result["correct"] else "incorrect"
    else:
        result = _check_expression(text, answer, mode, shown.strip())
    return {"problem": problem.strip(), "answer": answer.strip()} | result


# ----------------------------------------------------------------------------- quizzes

Question = dict  # {"en", "zh", "answer" (display), "values" (list[float]), "tol" (float)}
Difficulty = Literal["easy", "medium", "hard"]
QUIZ_ID = re.compile(r"^([a-z_]{3,30})-(easy|medium|hard)-(\d{1,2})-(\d{1,9})$")
STUDENT = re.compile(r"^[^\W_][\w .'\-]{0,39}$")
G = 10  # N/kg, as in most middle-school textbooks


def _q(en: str, zh: str, answer: str, values: list[float], tol: float = 1e-6) -> Question:
    return {"en": en, "zh": zh, "answer": answer, "values": [float(v) for v in values], "tol": tol}


def _num(v: float) -> str:
    """Print 4.0 as 4 and 2.3456 as 2.35."""
    return str(round(v)) if abs(v - round(v)) < 1e-9 else f"{v:.2f}".rstrip("0").rstrip(".")


def _frac(v: sp.Rational) -> str:
    return str(v) if v.q != 1 else str(v.p)


def _q_linear(rng: random.Random, level: str) -> Question:
    x = rng.choice([i for i in range(-9, 13) if i]) if level != "easy" else rng.randint(1, 12)
    a, b = rng.randint(2, 9), rng.randint(1, 20)
    if level == "easy":
        eq = f"{a}x + {b} = {a * x + b}"
        return _q(f"Solve {eq}.", f"解方程 {eq}。", f"x = {x}", [x])
    if level == "medium":
        c = rng.randint(1, a - 1) if a > 2 else 1
        d = a * x + b - c * x
        eq = f"{a}x + {b} = {c if c > 1 else ''}x + {d}".replace("+ -", "- ")
        return _q(f"Solve {eq}.", f"解方程 {eq}。", f"x = {x}", [x])
    den = rng.choice([2, 3, 4, 5])
    k = rng.randint(1, 6)
    rhs = sp.Rational(a * x + b, den)
    eq = f"({a}x + {b})/{den} = {_frac(rhs)}"
    sol = sp.Rational(x)
    if k % 2:  # sometimes make the answer a fraction
        eq = f"{den}x - {k} = {b}"
        sol = sp.Rational(b + k, den)
    return _q(f"Solve {eq}.", f"解方程 {eq}。", f"x = {_frac(sol)}", [float(sol)], 0.01)


def _q_quadratic(rng: random.Random, level: str) -> Question:
    if level == "easy" and rng.random() < 0.5:
        k = rng.randint(1, 15)
        eq = f"x^2 = {k * k}"
        return _q(f"Solve {eq}.", f"解方程 {eq}。", f"x = {k} or x = {-k}", [k, -k])
    if level == "easy":
        p, q = rng.sample(range(1, 10), 2)
        eq = f"(x - {p})(x + {q}) = 0"
        return _q(f"Solve {eq}.", f"解方程 {eq}。", f"x = {p} or x = {-q}", [p, -q])
    p, q = rng.sample([i for i in range(-9, 10) if i], 2)
    a = 1 if level == "medium" else rng.randint(2, 3)
    x = sp.Symbol("x")
    expr = sp.expand(a * (x - p) * (x - q)) if level == "medium" else sp.expand((a * x - p) * (x - q))
    roots = sorted(sp.solve(expr, x))
    eq = f"{_fmt(expr)} = 0"
    shown = " or ".join(f"x = {_frac(r)}" for r in roots)
    return _q(f"Solve {eq}.", f"解方程 {eq}。", shown, [float(r) for r in roots], 0.01)


def _q_fractions(rng: random.Random, level: str) -> Question:
    if level == "easy":
        pct, base = rng.choice([10, 20, 25, 50, 75, 5, 40]), rng.randint(2, 20) * 20
        value = pct * base / 100
        return _q(f"What is {pct}% of {base}?", f"{base} 的 {pct}% 是多少？", _num(value), [value])
    if level == "medium":
        b, d = rng.sample([2, 3, 4, 5, 6, 8], 2)
        a = rng.choice([n for n in range(1, b) if math.gcd(n, b) == 1])
        c = rng.choice([n for n in range(1, d) if math.gcd(n, d) == 1])
        total = sp.Rational(a, b) + sp.Rational(c, d)
        return _q(
            f"Work out {a}/{b} + {c}/{d} and give the answer as a fraction in lowest terms.",
            f"计算 {a}/{b} + {c}/{d}，结果写成最简分数。",
            _frac(total),
            [float(total)],
            0.001,
        )
    price, pct = rng.randint(4, 30) * 10, rng.choice([10, 20, 25, 30, 40])
    sale = price * (100 - pct) / 100
    return _q(
        f"After a {pct}% discount a jacket costs {_num(sale)} yuan. What was the original price?",
        f"一件外套降价 {pct}% 后售价 {_num(sale)} 元，原价是多少元？",
        f"{price} yuan (元)",
        [price],
    )


def _q_ratios(rng: random.Random, level: str) -> Question:
    if level == "easy":
        a, b = rng.sample(range(1, 8), 2)
        total = (a + b) * rng.randint(2, 12)
        parts = [total * a // (a + b), total * b // (a + b)]
        return _q(
            f"Share {total} sweets in the ratio {a}:{b}. How many are in each share?",
            f"把 {total} 颗糖按 {a}:{b} 分配，每份各多少颗？",
            f"{parts[0]} and {parts[1]}",
            parts,
        )
    if level == "medium":
        a, b, c = rng.sample(range(1, 7), 3)
        total = (a + b + c) * rng.randint(3, 15)
        parts = [total * k // (a + b + c) for k in (a, b, c)]
        return _q(
            f"Divide {total} yuan in the ratio {a}:{b}:{c}.",
            f"把 {total} 元按 {a}:{b}:{c} 分成三份，各是多少元？",
            ", ".join(map(str, parts)),
            parts,
        )
    scale, cm = rng.choice([25000, 50000, 100000, 200000]), rng.randint(2, 15)
    km = cm * scale / 100000
    return _q(
        f"A map has scale 1:{scale}. Two towns are {cm} cm apart on the map. How far apart are they in km?",
        f"地图比例尺为 1:{scale}，两镇在图上相距 {cm} cm，实际相距多少千米？",
        f"{_num(km)} km",
        [km],
        0.01,
    )


def _q_pythagoras(rng: random.Random, level: str) -> Question:
    a, b, c = rng.choice([(3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (9, 40, 41)])
    k = rng.randint(1, 5)
    a, b, c = a * k, b * k, c * k
    if level == "easy":
        return _q(
            f"A right triangle has legs {a} cm and {b} cm. How long is the hypotenuse?",
            f"直角三角形两条直角边分别为 {a} cm 和 {b} cm，斜边长多少？",
            f"{c} cm",
            [c],
        )
    if level == "medium":
        return _q(
            f"A right triangle has hypotenuse {c} m and one leg {a} m. Find the other leg.",
            f"直角三角形斜边长 {c} m，一条直角边长 {a} m，求另一条直角边。",
            f"{b} m",
            [b],
        )
    h, d = rng.randint(3, 12), rng.randint(1, 5)
    length = math.sqrt(h * h + d * d)
    return _q(
        f"A ladder reaches {h} m up a wall and its foot is {d} m from the wall. How long is the ladder "
        "(2 decimal places)?",
        f"梯子顶端靠在墙上 {h} m 高处，底端离墙 {d} m，梯子长多少米（保留两位小数）？",
        f"{length:.2f} m",
        [round(length, 2)],
        0.011,
    )


def _q_area_volume(rng: random.Random, level: str) -> Question:
    if level == "easy":
        base, height = rng.randint(3, 20), rng.randint(2, 12) * 2
        area = base * height / 2
        return _q(
            f"A triangle has base {base} cm and height {height} cm. Find its area.",
            f"三角形底为 {base} cm，高为 {height} cm，求面积。",
            f"{_num(area)} cm^2",
            [area],
        )
    r = rng.randint(2, 20)
    if level == "medium" and rng.random() < 0.5:
        length, width, height = rng.randint(2, 15), rng.randint(2, 10), rng.randint(2, 10)
        vol = length * width * height
        return _q(
            f"A cuboid box is {length} cm long, {width} cm wide and {height} cm high. Find its volume.",
            f"长方体盒子长 {length} cm、宽 {width} cm、高 {height} cm，求体积。",
            f"{vol} cm^3",
            [vol],
        )
    if level == "medium":
        area = 3.14 * r * r
        return _q(
            f"Find the area of a circle with radius {r} cm (use π ≈ 3.14).",
            f"半径为 {r} cm 的圆面积是多少？（π 取 3.14）",
            f"{_num(area)} cm^2",
            [area],
            0.011,
        )
    h = rng.randint(3, 15)
    vol = 3.14 * r * r * h
    return _q(
        f"Find the volume of a cylinder with radius {r} cm and height {h} cm (use π ≈ 3.14).",
        f"圆柱底面半径 {r} cm，高 {h} cm，体积是多少？（π 取 3.14）",
        f"{_num(vol)} cm^3",
        [vol],
        0.011,
    )


def _q_probability(rng: random.Random, level: str) -> Question:
    red, blue = rng.randint(1, 9), rng.randint(1, 9)
    if level == "easy":
        p = sp.Rational(red, red + blue)
        return _q(
            f"A bag has {red} red and {blue} blue balls. One is taken at random. What is P(red)?",
            f"袋中有 {red} 个红球、{blue} 个蓝球，随机摸出一个，摸到红球的概率是多少？",
            _frac(p),
            [float(p)],
            0.001,
        )
    if level == "medium":
        sides, k = rng.choice([6, 8, 10, 12, 20]), rng.randint(2, 5)
        p = sp.Rational(sides - k, sides)
        return _q(
            f"A fair {sides}-sided die (numbered 1 to {sides}) is rolled. What is the probability of a number "
            f"greater than {k}?",
            f"掷一枚标有 1 到 {sides} 的均匀 {sides} 面骰子，点数大于 {k} 的概率是多少？",
            _frac(p),
            [float(p)],
            0.001,
        )
    red = max(red, 2)
    p = sp.Rational(red, red + blue) * sp.Rational(red - 1, red + blue - 1)
    return _q(
        f"A bag has {red} red and {blue} blue balls. Two are taken without replacement. What is the "
        "probability both are red?",
        f"袋中有 {red} 个红球、{blue} 个蓝球，不放回地摸两个，两个都是红球的概率是多少？",
        _frac(p),
        [float(p)],
        0.001,
    )


def _q_speed(rng: random.Random, level: str) -> Question:
    if level == "easy":
        t, v = rng.randint(2, 6), rng.randint(3, 30) * 5
        return _q(
            f"A car travels {v * t} km in {t} h. What is its average speed in km/h?",
            f"汽车 {t} 小时行驶 {v * t} km，平均速度是多少 km/h？",
            f"{v} km/h",
            [v],
        )
    if level == "medium":
        ms = rng.randint(1, 40)
        if rng.random() < 0.5:
            return _q(
                f"Convert {_num(ms * 3.6)} km/h into m/s.",
                f"把 {_num(ms * 3.6)} km/h 换算成 m/s。",
                f"{ms} m/s",
                [ms],
                0.01,
            )
        return _q(
            f"Convert {ms} m/s into km/h.", f"把 {ms} m/s 换算成 km/h。", f"{_num(ms * 3.6)} km/h", [ms * 3.6], 0.01
        )
    u, a, t = rng.randint(0, 10), rng.randint(1, 5), rng.randint(2, 8)
    v = u + a * t
    return _q(
        f"A cyclist speeds up from {u} m/s to {v} m/s in {t} s. What is the acceleration?",
        f"自行车在 {t} s 内速度从 {u} m/s 增加到 {v} m/s，加速度是多少？",
        f"{a} m/s^2",
        [a],
    )


def _q_density(rng: random.Random, level: str) -> Question:
    if level == "easy":
        rho, vol = rng.choice([0.8, 1.0, 2.7, 7.9, 11.3, 19.3]), rng.randint(2, 20) * 5
        mass = rho * vol
        return _q(
            f"A block has mass {_num(mass)} g and volume {vol} cm^3. What is its density in g/cm^3?",
            f"一个物块质量 {_num(mass)} g，体积 {vol} cm^3，密度是多少 g/cm^3？",
            f"{_num(rho)} g/cm^3",
            [rho],
            0.01,
        )
    if level == "medium":
        rho, vol = rng.choice([0.8, 0.9, 1.0, 2.7, 7.9, 8.9, 11.3]), rng.randint(2, 30) * 10
        return _q(
            f"A liquid or solid has density {_num(rho)} g/cm^3 ({_num(rho * 1000)} kg/m^3). What is the mass of "
            f"{vol} cm^3 of it, in grams?",
            f"某物质密度为 {_num(rho)} g/cm^3（{_num(rho * 1000)} kg/m^3），{vol} cm^3 这种物质的质量是多少克？",
            f"{_num(rho * vol)} g",
            [rho * vol],
            0.01,
        )
    v1, dv, rho = rng.randint(40, 60), rng.randint(5, 20), rng.choice([2.7, 7.9, 8.9])
    mass = rho * dv
    return _q(
        f"A stone of mass {_num(mass)} g is dropped into a measuring cylinder; the water rises from {v1} mL "
        f"to {v1 + dv} mL. Find the stone's density in g/cm^3.",
        f"质量为 {_num(mass)} g 的石块放入量筒，水面从 {v1} mL 升到 {v1 + dv} mL，求石块密度（g/cm^3）。",
        f"{_num(rho)} g/cm^3",
        [rho],
        0.01,
    )


def _q_pressure(rng: random.Random, level: str) -> Question:
    if level == "easy":
        area, p = rng.choice([0.5, 1, 2, 4]), rng.randint(2, 40) * 100
        return _q(
            f"A force of {_num(p * area)} N acts on {_num(area)} m^2. What is the pressure in Pa?",
            f"{_num(p * area)} N 的压力作用在 {_num(area)} m^2 上，压强是多少 Pa？",
            f"{p} Pa",
            [p],
        )
    if level == "medium":
        mass, cm2 = rng.randint(40, 70), rng.choice([200, 250, 400, 500])
        p = mass * G / (cm2 / 10000)
        return _q(
            f"A student of mass {mass} kg stands on both feet, total contact area {cm2} cm^2. Find the pressure "
            f"on the floor (g = {G} N/kg).",
            f"质量 {mass} kg 的同学双脚站立，与地面总接触面积 {cm2} cm^2，求对地面的压强（g 取 {G} N/kg）。",
            f"{_num(p)} Pa",
            [p],
            0.01,
        )
    depth = rng.randint(2, 50)
    p = 1000 * G * depth
    return _q(
        f"What is the water pressure at a depth of {depth} m (ρ = 1000 kg/m^3, g = {G} N/kg)?",
        f"水深 {depth} m 处的液体压强是多少？（ρ 取 1000 kg/m^3，g 取 {G} N/kg）",
        f"{p} Pa",
        [p],
    )


def _q_ohm(rng: random.Random, level: str) -> Question:
    if level == "easy":
        r, i = rng.choice([2, 4, 5, 10, 20]), rng.choice([0.2, 0.5, 1, 1.5, 2])
        return _q(
            f"A {_num(r * i)} V supply drives current through a {r} Ω resistor. What is the current?",
            f"{_num(r * i)} V 的电源接在 {r} Ω 的电阻上，电流是多少？",
            f"{_num(i)} A",
            [i],
            0.01,
        )
    r1, r2 = rng.randint(1, 10) * 2, rng.randint(1, 10) * 2
    if level == "medium":
        v = rng.choice([6, 12, 24])
        i = v / (r1 + r2)
        return _q(
            f"Resistors of {r1} Ω and {r2} Ω are in series across {v} V. Find the current.",
            f"{r1} Ω 和 {r2} Ω 的电阻串联接在 {v} V 电源上，求电路中的电流。",
            f"{_num(i)} A",
            [round(i, 2)],
            0.011,
        )
    total = r1 * r2 / (r1 + r2)
    return _q(
        f"Resistors of {r1} Ω and {r2} Ω are connected in parallel. What is the total resistance (2 d.p.)?",
        f"{r1} Ω 和 {r2} Ω 的电阻并联，总电阻是多少（保留两位小数）？",
        f"{_num(total)} Ω",
        [round(total, 2)],
        0.011,
    )


def _q_work(rng: random.Random, level: str) -> Question:
    f, s = rng.randint(2, 50) * 10, rng.randint(2, 20)
    if level == "easy":
        return _q(
            f"A {f} N force pushes a box {s} m along its direction. How much work is done?",
            f"用 {f} N 的力沿力的方向推箱子移动 {s} m，做了多少功？",
            f"{f * s} J",
            [f * s],
        )
    if level == "medium":
        t = rng.choice([2, 4, 5, 10])
        return _q(
            f"A motor does {f * s} J of work in {t} s. What is its power?",
            f"电动机 {t} s 内做功 {f * s} J，功率是多少？",
            f"{_num(f * s / t)} W",
            [f * s / t],
            0.01,
        )
    m, v = rng.randint(1, 20), rng.randint(2, 12)
    ke = 0.5 * m * v * v
    return _q(
        f"Find the kinetic energy of a {m} kg ball moving at {v} m/s.",
        f"质量 {m} kg 的球以 {v} m/s 运动，动能是多少？",
        f"{_num(ke)} J",
        [ke],
    )


def _q_newton(rng: random.Random, level: str) -> Question:
    m, a = rng.randint(1, 20), rng.randint(1, 6)
    if level == "easy":
        return _q(
            f"A net force of {m * a} N acts on a {m} kg trolley. What is its acceleration?",
            f"{m * a} N 的合力作用在 {m} kg 的小车上，加速度是多少？",
            f"{a} m/s^2",
            [a],
        )
    friction = rng.randint(1, 10) * 5
    if level == "medium":
        return _q(
            f"A {m} kg box is pushed with {m * a + friction} N while friction is {friction} N. Find the acceleration.",
            f"用 {m * a + friction} N 的力推 {m} kg 的箱子，摩擦力为 {friction} N，求加速度。",
            f"{a} m/s^2",
            [a],
        )
    m = rng.randint(1, 80)
    return _q(
        f"What is the weight of a {m} kg mass on the Moon, where g = 1.6 N/kg?",
        f"质量 {m} kg 的物体在月球上（g 取 1.6 N/kg）重多少牛？",
        f"{_num(m * 1.6)} N",
        [m * 1.6],
        0.01,
    )


TOPICS: dict[str, Callable[[random.Random, str], Question]] = {
    "linear_equations": _q_linear,
    "quadratic_equations": _q_quadratic,
    "fractions_percentages": _q_fractions,
    "ratios": _q_ratios,
    "pythagoras": _q_pythagoras,
    "area_volume": _q_area_volume,
    "probability": _q_probability,
    "speed": _q_speed,
    "density": _q_density,
    "pressure": _q_pressure,
    "ohms_law": _q_ohm,
    "work_energy_power": _q_work,
    "newtons_laws": _q_newton,
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


def _canonical_topic(topic: str) -> str:
    if not isinstance(topic, str) or not topic.strip():
        raise ValueError("topic is empty")
    key = re.sub(r"[\s\-]+", "_", topic.strip().lower().replace("'", "").replace("’", "")).strip("_")
    key = TOPIC_ALIASES.get(key, TOPIC_ALIASES.get(key.removesuffix("s"), key))
    if key not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; choose one of: {', '.join(TOPICS)}")
    return key


def _build_quiz(topic: str, difficulty: str, count: int, seed: int) -> list[Question]:
    rng = random.Random(f"{topic}|{difficulty}|{seed}")
    questions: list[Question] = []
    seen: set[str] = set()
    for _ in range(count * 20):  # retry duplicates; templates have far more than 20 variants
        q = TOPICS[topic](rng, difficulty)
        if q["en"] not in seen:
            seen.add(q["en"])
            questions.append(q)
        if len(questions) == count:
            break
    return questions


def _db() -> sqlite3.Connection:
    folder = Path(state_dir(PACK))
    folder.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(folder / "education.sqlite3", timeout=5)
    conn.executescript(
        "CREATE TABLE IF NOT EXISTS quizzes (quiz_id TEXT PRIMARY KEY, topic TEXT NOT NULL,"
        " difficulty TEXT NOT NULL, count INTEGER NOT NULL, seed INTEGER NOT NULL, questions TEXT NOT NULL,"
        " created_at TEXT NOT NULL);"
        "CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, quiz_id TEXT NOT NULL,"
        " student TEXT NOT NULL, score INTEGER NOT NULL, total INTEGER NOT NULL, answers TEXT NOT NULL,"
        " graded_at TEXT NOT NULL);"
    )
    return conn


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@tool(timeout_s=3.0)
def generate_quiz(topic: str, difficulty: Literal["easy", "medium", "hard"], count: int, seed: int) -> dict:
    """Build a short quiz (questions in Chinese and English, with answers for the tutor) and store it.

    Args:
        topic: One of linear_equations, quadratic_equations, fractions_percentages, ratios, pythagoras,
            area_volume, probability, speed, density, pressure, ohms_law, work_energy_power, newtons_laws
            (Chinese names such as 一元二次方程 or 欧姆定律 also work).
        difficulty: easy, medium or hard.
        count: Number of questions, 1 to 20.
        seed: Any whole number 0..999999999; the same seed gives the same quiz.
    """
    key = _canonical_topic(topic)
    if difficulty not in ("easy", "medium", "hard"):
        raise ValueError(f"difficulty must be easy, medium or hard, got {difficulty!r}")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 20:
        raise ValueError(f"count must be a whole number from 1 to 20, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 999_999_999:
        raise ValueError(f"seed must be a whole number from 0 to 999999999, got {seed!r}")
    questions = _build_quiz(key, difficulty, count, seed)
    quiz_id = f"{key}-{difficulty}-{count}-{seed}"
    with _db() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO quizzes VALUES (?, ?, ?, ?, ?, ?, ?)",
            (quiz_id, key, difficulty, count, seed, json.dumps(questions, ensure_ascii=False), _now()),
        )
    conn.close()
    return {
        "quiz_id": quiz_id,
        "topic": key,
        "difficulty": difficulty,
        "questions": [{"n": i + 1, "en": q["en"], "zh": q["zh"]} for i, q in enumerate(questions)],
        "answers_for_tutor": [{"n": i + 1, "answer": q["answer"]} for i, q in enumerate(questions)],
        "note": "Show the questions only; keep the answers until the student has replied, then call grade_quiz.",
    }


def _numbers(text: str) -> list[float]:
    """Pull the numbers out of an answer such as "x = -3 or x=2", "3/4", "25 %", "x₁=2, x₂=3" or "4 m/s^2"."""
    text = unicodedata.normalize("NFKC", text.replace("²", "").replace("³", ""))
    text = re.sub(r"\^\s*\d", "", text)
    text = re.sub(r"[A-Za-z]\w*\s*=", " ", text)
    text = text.replace("−", "-").replace("±", "+-")
    values: list[float] = []
    for sign, num, den in re.findall(r"(\+-|-)?\s*(\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?", text):
        value = float(num) / float(den) if den and float(den) else float(num)
        values += [value, -value] if sign == "+-" else [-value if sign == "-" else value]
    return values


def _matches(given: str, question: Question) -> bool:
    got, want = sorted(_numbers(given)), sorted(question["values"])
    return len(got) == len(want) and all(
        abs(g - w) <= question["tol"] * max(1.0, abs(w)) for g, w in zip(got, want, strict=True)
    )


def _load_quiz(quiz_id: str) -> list[Question]:
    if not isinstance(quiz_id, str):
        raise ValueError("quiz_id must be text such as 'pythagoras-easy-5-42'")
    match = QUIZ_ID.match(quiz_id)
    if not match:
        raise ValueError(
            f"malformed quiz_id {quiz_id[:60]!r}: expected topic-difficulty-count-seed, "
            "e.g. 'pythagoras-easy-5-42', as returned by generate_quiz"
        )
    topic, difficulty, count, seed = match.group(1), match.group(2), int(match.group(3)), int(match.group(4))
    if topic not in TOPICS or not 1 <= count <= 20:
        raise ValueError(f"unknown quiz {quiz_id!r}: no such topic or count out of range 1..20")
    with _db() as conn:
        row = conn.execute("SELECT questions FROM quizzes WHERE quiz_id = ?", (quiz_id,)).fetchone()
    conn.close()
    return json.loads(row[0]) if row else _build_quiz(topic, difficulty, count, seed)


@tool(timeout_s=3.0)
def grade_quiz(quiz_id: str, answers: list[str], student: str) -> dict:
    """Mark a student's answers to a quiz made by generate_quiz and save the score.

    Args:
        quiz_id: The id returned by generate_quiz, e.g. "pythagoras-easy-5-42".
        answers: One answer per question in order, e.g. ["x = 4", "13 cm", ""]; use "" for a skipped question.
        student: The student's name or nickname (1-40 letters, digits, spaces, . ' -).
    """
    questions = _load_quiz(quiz_id)
    if not isinstance(student, str) or not STUDENT.match(student.strip()):
        raise ValueError("student must be 1-40 characters: letters, digits, spaces, . ' - (no symbols or SQL)")
    if not isinstance(answers, list) or not all(isinstance(a, str) and len(a) <= 100 for a in answers):
        raise ValueError("answers must be a list of strings of at most 100 characters each")
    if len(answers) != len(questions):
        raise ValueError(
            f"quiz {quiz_id} has {len(questions)} questions but {len(answers)} answers were given; "
            "use '' for a skipped question"
        )
    results = [
        {"n": i + 1, "given": a, "expected": q["answer"], "correct": bool(a.strip()) and _matches(a, q)}
        for i, (a, q) in enumerate(zip(answers, questions, strict=True))
    ]
    score = sum(r["correct"] for r in results)
    with _db() as conn:
        conn.execute(
            "INSERT INTO results (quiz_id, student, score, total, answers, graded_at) VALUES (?, ?, ?, ?, ?, ?)",
            (quiz_id, student.strip(), score, len(questions), json.dumps(answers, ensure_ascii=False), _now()),
        )
    conn.close()
    return {
        "quiz_id": quiz_id,
        "student": student.strip(),
        "score": score,
        "total": len(questions),
        "percent": round(100 * score / len(questions)),
        "results": results,
        "saved": True,
    }


# ----------------------------------------------------------------------------- planners (before generation)

# A maths span: numbers, x/y/z, operators, brackets; the words around it are the student's.
_MATH_TOKEN = re.compile(r"\d+(?:\.\d+)?|[xyz]|[-+*/^()=÷×%]|\s+")
_ASSIGNMENT = re.compile(r"^[xyz]\s*=\s*-?\d+(?:[./]\d+)?$")
_ANSWER_CUE = re.compile(
    r"(?:i got|i wrote|i think it'?s|my answer is|is it|i have|i said|answer:|我得|我算出|我算的是|我算的|"
    r"我写的是|我写|答案是|得到)\s*[:：]?\s*",
    re.IGNORECASE,
)
_OPERAND_END, _OPERAND_START = re.compile(r"[\d xyz)]$"), re.compile(r"^[\dxyz(]")
_MODE_WORDS = (("factor", r"factori[sz]e|factor|因式分解|分解因式"), ("expand", r"expand|展开"),
               ("simplify", r"simplify|化简"))  # fmt: skip
_QUIZ_REQUEST = re.compile(r"quiz|questions?|practice|题", re.IGNORECASE)
_DIFFICULTY_WORDS = (("hard", r"hard|difficult|难"), ("medium", r"medium|中等|一般"),
                     ("easy", r"easy|simple|简单|基础"))  # fmt: skip
_QUIZ_ID_IN_TEXT = re.compile(QUIZ_ID.pattern.removeprefix("^").removesuffix("$"))  # a quiz id inside a message
_NUMBERED = re.compile(r"(?:^|\s)\d{1,2}\s*[).、]\s*(?!\d)")
_STUDENT_CUE = re.compile(
    r"[.。,，;；]?\s*(?:(?:i'?m|i am|my name is|for)\s+|(?:我叫|我是)\s*)([^\s,.。，;；:：]{1,40})", re.IGNORECASE
)
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
    cleaned = [(at, span.strip().rstrip(" \n.=,+-*/^÷×").lstrip(" .=,+*/^÷×")) for at, span in spans]
    return [(at, span) for at, span in cleaned if re.search(r"\d", span) and re.search(r"[-+*/^=÷×xyz]", span)]


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


def _quiz_answers(text: str) -> list[str]:
    """ "1) 5 cm 2) 125 cm" or "0.2 A、2 A、0.5 A" -> one answer per question, in order."""
    text = text.strip(" :：").rstrip(" 。.")
    parts = _NUMBERED.split(text) if _NUMBERED.search(text) else re.split(r"\s*[、;；，]\s*", text)
    return [part.strip(" ,，;；。.") for part in parts if part.strip(" ,，;；。.")] or [text]


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
    tail = re.sub(r"^\s*(?:are|is|=)?\s*[:：]?", "", tail)
    tail = re.sub(r"^[^\d\-xyz]*?(?=\d|-|x)", "", tail, count=1) if _NUMBERED.search(tail) else tail
    arguments = {"quiz_id": found.group(0), "answers": _quiz_answers(tail)[:20],
                 "student": student.group(1) if student else "student"}  # fmt: skip
    return [PlannedCall("grade_quiz", arguments, "answers to a stored quiz")]
