"""Judges: a configured model asked for a small JSON verdict (rubric, factuality, pairwise preference).

Models wrap JSON in prose or code fences, or break it. A reply is read leniently: the first
JSON object (repaired if broken, see routing/judge.py), else a `score: 0.8` or PASS/FAIL in
the text. A reply with no verdict at all is asked once more with a reminder; after that the
judge raises `JudgeFailed` and the assertion fails with the reason. A judge never crashes a run.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from json_repair import repair_json

from modelplane.routing.judge import parse_object

T = TypeVar("T")
Complete = Callable[[list[dict[str, Any]]], Awaitable[str]]  # messages -> the judge model's reply text

_SCORE_IN_TEXT = re.compile(r"score\W{0,3}\s*[:=]\s*[\"']?([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)
_PASS_IN_TEXT = re.compile(r"\b(PASS|FAIL)\b")
_WINNER_IN_TEXT = re.compile(r"winner\W{0,3}\s*[:=]\s*\W{0,2}(A|B|tie)\b", re.IGNORECASE)
_REMINDER = "Reply with only the JSON object, nothing else."

RUBRIC_SYSTEM = (
    "You grade an answer against a rubric. Reply with only a JSON object: "
    '{"pass": true|false, "score": <a number from 0 to 1>, "reason": "<one sentence>"}.'
)
FACTUALITY_SYSTEM = (
    "You check an answer against a reference answer. The answer passes when it agrees with every fact "
    "of the reference that it states and contradicts none; style and length do not matter. Reply with "
    'only a JSON object: {"pass": true|false, "score": <a number from 0 to 1>, "reason": "<one sentence>"}.'
)
PAIRWISE_SYSTEM = (
    "You compare two answers, A and B, to the same request. Reply with only a JSON object: "
    '{"winner": "A" | "B" | "tie", "reason": "<one sentence>"}.'
)


class JudgeFailed(Exception):
    """The judge gave no usable verdict (or its model failed); the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A judge's structured result. `passed` None: the assertion's threshold decides from `score`."""

    score: float
    passed: bool | None
    reason: str


class Judge:
    """A configured model used as a judge; `complete` calls it (cached and recorded by the runner)."""

    def __init__(self, model: str, complete: Complete, retries: int = 1) -> None:
        self.model = model
        self.complete = complete
        self.retries = retries

    async def rubric(self, rubric: str, question: str, output: str) -> Verdict:
        """How well `output` meets `rubric`."""
        user = f"Rubric: {rubric}\n\nRequest:\n{question}\n\nAnswer:\n{output}"
        return await self._ask(RUBRIC_SYSTEM, user, _graded)

    async def factuality(self, question: str, reference: str, output: str) -> Verdict:
        """Whether `output` agrees with `reference`."""
        user = f"Request:\n{question}\n\nReference answer:\n{reference}\n\nAnswer:\n{output}"
        return await self._ask(FACTUALITY_SYSTEM, user, _graded)

    async def pairwise(self, question: str, output: str, baseline: str, seed: int, both_orders: bool) -> Verdict:
        """Is `output` at least as good as `baseline`? Positions are randomised by `seed` (stable per case);
        with `both_orders` the judge also sees them swapped, which cancels a bias for one position."""
        output_first = random.Random(seed).random() < 0.5
        orders = [output_first, not output_first] if both_orders else [output_first]
        points, reasons = [], []
        for first in orders:
            a, b = (output, baseline) if first else (baseline, output)
            user = f"Request:\n{question}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}"
            winner, reason = await self._ask(PAIRWISE_SYSTEM, user, _winner)
            mine = "A" if first else "B"
            points.append(0.5 if winner == "TIE" else float(winner == mine))
            reasons.append(reason)
        score = sum(points) / len(points)
        won = sum(1 for p in points if p == 1.0)
        summary = f"preferred over the baseline in {won}/{len(points)} order(s)"
        return Verdict(score, None, f"{summary}: {reasons[0]}" if reasons[0] else summary)

    async def _ask(self, system: str, user: str, parse: Callable[[str], T | None]) -> T:
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        reply = ""
        for attempt in range(self.retries + 1):
            try:
                reply = await self.complete(messages)
            except Exception as exc:  # the model failed: the assertion fails with why
                raise JudgeFailed(f"judge model '{self.model}' failed: {_one_line(str(exc))}") from exc
            verdict = parse(reply)
            if verdict is not None:
                return verdict
            if attempt < self.retries:
                messages = [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": _REMINDER}]
        raise JudgeFailed(f"judge reply has no verdict: {_one_line(reply)[:120]!r}")


def _graded(reply: str) -> Verdict | None:
    """A score and/or pass from a rubric-style reply."""
    found = _lenient_object(reply)
    score = _number(found.get("score"))
    passed = _flag(found.get("pass", found.get("passed")))
    reason = _one_line(str(found.get("reason") or ""))
    if score is None and passed is None:  # no usable object: look for the words themselves
        match = _SCORE_IN_TEXT.search(reply)
        score = _number(match.group(1)) if match else None
        word = _PASS_IN_TEXT.search(reply)
        passed = None if word is None else word.group(1) == "PASS"
        reason = reason or _one_line(reply)[:200]
    if score is None and passed is None:
        return None
    if score is None:
        score = 1.0 if passed else 0.0
    return Verdict(score, passed, reason)


def _winner(reply: str) -> tuple[str, str] | None:
    found = _lenient_object(reply)
    winner = str(found.get("winner", "")).strip().upper()
    if winner not in ("A", "B", "TIE"):
        match = _WINNER_IN_TEXT.search(reply)
        winner = match.group(1).upper() if match else ""
    if winner not in ("A", "B", "TIE"):
        return None
    return winner, _one_line(str(found.get("reason") or ""))


def _lenient_object(reply: str) -> dict[str, Any]:
    """The first JSON object in the reply, repaired; also one cut off before its closing brace."""
    found = parse_object(reply)
    if found is None and "{" in reply:
        repaired = repair_json(reply[reply.index("{") :], return_objects=True)
        found = repaired if isinstance(repaired, dict) else None
    return found or {}


def _number(value: Any) -> float | None:
    """A score in [0, 1]; 0-10 and 0-100 scales are rescaled; anything else is None."""
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%"))
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    for scale in (1, 10, 100):
        if value <= scale:
            return float(value) / scale
    return None


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "pass", "false", "no", "fail"):
        return value.strip().lower() in ("true", "yes", "pass")
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())
