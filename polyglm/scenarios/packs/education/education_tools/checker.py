"""The sympy answer checker: the `check_answer` tool and the safe maths parsing behind it.

Nothing here calls `eval` on user text. Maths is parsed by `sympy.parse_expr` after a character and
word whitelist, with an empty `__builtins__`, only the sympy constructors it needs, one Symbol per
Latin letter, and a small set of transformations (numbers, implicit multiplication, `^` as power).
"""

from __future__ import annotations

import keyword
import math
import re
import string
import unicodedata

import sympy as sp
from sympy.parsing.sympy_parser import auto_number, convert_xor, implicit_multiplication, parse_expr

from polyglm.scenarios.tooling import tool

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


def textbook(expr: sp.Basic) -> str:
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
    steps = [f"collect the {x} terms on one side and the numbers on the other: {textbook(a * x)} = {textbook(-b)}"]
    if a != 1:
        steps.append(f"divide both sides by {textbook(a)}: {x} = {textbook(sp.nsimplify(-b / a))}")
    return steps


def _quadratic_steps(eq: sp.Eq, x: sp.Symbol) -> list[str]:
    expr = sp.expand(eq.lhs - eq.rhs)
    a, b, c = sp.Poly(expr, x).all_coeffs()
    steps = [f"standard form a{x}^2 + b{x} + c = 0: {textbook(expr)} = 0 (a = {a}, b = {b}, c = {c})"]
    disc = sp.simplify(b**2 - 4 * a * c)
    steps.append(f"discriminant b^2 - 4ac = {textbook(disc)}")
    factored = sp.factor(expr)
    if factored != expr and (factored.is_Mul or factored.is_Pow):
        steps.append(f"factorise: {textbook(factored)} = 0, so each factor can be 0")
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
    steps = [f"equation: {textbook(eq.lhs)} = {textbook(eq.rhs)}"]
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
        steps.append(f"rearrange to one side: {textbook(sp.factor(expr))} = 0")
    solutions = [s for s in sp.solve(expr, x) if s.is_real]
    shown = [textbook(s.evalf(6)) if s.has(sp.CRootOf) else textbook(s) for s in solutions]  # no closed form: decimals
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
                f"check {x} = {textbook(value)}: left side = {textbook(sp.simplify(left))}, "
                f"right side = {textbook(sp.simplify(right))} ({verdict})"
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
    steps = [f"equation {i + 1}: {textbook(e.lhs)} = {textbook(e.rhs)}" for i, e in enumerate(eqs)]
    steps.append("eliminate one unknown (add/subtract the equations or substitute), solve, then back-substitute")
    if len(solutions) != 1 or len(solutions[0]) != len(unknowns):
        expected = "no unique solution"
        return {"kind": "system", "expected": expected, "steps": steps, "correct": answer.strip() in _NO_SOLUTION}
    sol = solutions[0]
    expected = ", ".join(f"{s} = {textbook(sol[s])}" for s in unknowns)
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
        steps.append(f"exact value: {textbook(exact)}" + (f" ≈ {approx}" if approx else ""))
        expected = textbook(exact) + (f" (≈ {approx})" if approx else "")
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
            note = f"correct to {len(decimals.group(1))} decimal places; the exact value is {textbook(exact)}"
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
        steps.append(f"take out common factors and use patterns such as a^2 - b^2 = (a - b)(a + b): {textbook(target)}")
    elif mode == "expand":
        steps.append(f"multiply out every bracket and collect like terms: {textbook(target)}")
    else:
        num, den = sp.fraction(sp.together(value))
        if den != 1:
            steps.append(f"factorise top and bottom: ({textbook(sp.factor(num))}) / ({textbook(sp.factor(den))})")
        steps.append(f"simplified: {textbook(target)}")
    result = {"kind": "expression", "mode": mode, "expected": textbook(target), "steps": steps}
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
    return {"problem": problem.strip(), "answer": answer.strip()} | _verdicts(result["status"]) | result


# The verdict in each reader's words, in the words the pack's training replies use ("correct"/"正确",
# "not"/"不对"): a Chinese student asking "对吗？" was told "correct: True; status: correct" when the
# model's reply fell back to the tool result.
VERDICTS = {
    "correct": {"en": "correct", "zh": "正确"},
    "incorrect": {"en": "not correct", "zh": "不对"},
    "equivalent_not_simplified": {"en": "not correct yet: right value, not in the form asked for",
                                  "zh": "还不对：值相等，但形式不符合要求"},
}  # fmt: skip


def _verdicts(status: str) -> dict[str, str]:
    return {f"verdict_{lang}": words for lang, words in VERDICTS[status].items()}
