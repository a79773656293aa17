"""Judge prompts and the parsing of their verdicts, for cascade checks and shadow judging.

A judge is a model asked for a small JSON object. Models wrap JSON in prose or code fences,
or break it; parsing takes the first JSON object in the text (repaired if need be) and
returns None when no usable verdict is there — a caller never trusts a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson
from json_repair import repair_json

SCORE_SYSTEM = (
    "You grade one answer to a request against a rubric. Reply with only a JSON object: "
    '{"score": <a number from 0 to 1>, "reason": "<one sentence>"}.'
)
COMPARE_SYSTEM = (
    "You compare two answers, A and B, to the same request. Reply with only a JSON object: "
    '{"winner": "A" | "B" | "tie", "a_acceptable": true|false, "b_acceptable": true|false}. '
    "'tie' means both are equally good; an answer is acceptable when it is correct and complete."
)


@dataclass(frozen=True, slots=True)
class Comparison:
    """A shadow verdict, from the cheap (weak) answer's point of view."""

    verdict: str  # "weak_worse", "tie", "weak_better"
    weak_ok: bool
    strong_ok: bool

    @property
    def score(self) -> float:
        """1: the cheap answer was as good as the strong one; 0: it was worse."""
        return 0.0 if self.verdict == "weak_worse" else 1.0


def score_request(rubric: str, question: str, answer: str) -> dict[str, Any]:
    """The chat body asking a judge to score `answer` against `rubric`."""
    user = f"Rubric: {rubric}\n\nRequest:\n{question}\n\nAnswer:\n{answer}"
    return _body(SCORE_SYSTEM, user)


def compare_request(question: str, first: str, second: str) -> dict[str, Any]:
    """The chat body asking a judge to compare answer A (`first`) with answer B (`second`)."""
    user = f"Request:\n{question}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}"
    return _body(COMPARE_SYSTEM, user)


def parse_score(text: str) -> float | None:
    """The score in [0, 1] from a judge's reply (0-10 scales are divided by 10), or None."""
    verdict = parse_object(text)
    value = None if verdict is None else verdict.get("score")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if 1 < value <= 10:
        value /= 10
    return float(value) if 0 <= value <= 1 else None


def parse_comparison(text: str, weak_is_a: bool) -> Comparison | None:
    """The comparison from a judge's reply, mapped back from A/B to weak/strong, or None."""
    verdict = parse_object(text)
    if verdict is None:
        return None
    winner = str(verdict.get("winner", "")).strip().upper()
    a_ok, b_ok = verdict.get("a_acceptable"), verdict.get("b_acceptable")
    if winner not in ("A", "B", "TIE") or not isinstance(a_ok, bool) or not isinstance(b_ok, bool):
        return None
    weak_ok, strong_ok = (a_ok, b_ok) if weak_is_a else (b_ok, a_ok)
    if winner == "TIE":
        return Comparison("tie", weak_ok, strong_ok)
    weak_won = (winner == "A") == weak_is_a
    return Comparison("weak_better" if weak_won else "weak_worse", weak_ok, strong_ok)


def parse_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text`, repaired if broken; None when there is none."""
    start = text.find("{")
    if start < 0:
        return None
    end = text.rfind("}")
    candidate = text[start : end + 1] if end > start else text[start:]  # a reply cut short has no "}"
    try:
        value = orjson.loads(candidate)
    except orjson.JSONDecodeError:
        try:
            value = repair_json(candidate, return_objects=True)
        except (ValueError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def answer_text(body: dict[str, Any]) -> str:
    """The text of a chat.completion's first choice ('' when it has none)."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def _body(system: str, user: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return {"messages": messages, "temperature": 0}
