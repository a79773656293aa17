"""Cascade acceptance: is the cheaper model's answer good enough, or does the serving escalate?

The invoker asks the route's models in order (cheapest first). After each answer but the
last model's, `Acceptance.accepts` runs the feature's checks (`route.accept`), all of which
must pass:

- `not_empty` (default on), `contains` (a substring), `regex` (searched in the answer);
- `json_schema`: the answer is JSON valid against the feature's or request's schema (any JSON
  object without one), without repair;
- `judge`: a judge model scores the answer against a rubric (0..1); a failed or unreadable
  judgement counts as a failed check (escalating costs money, a bad answer costs more);
- `min_logprob`: the mean token log-probability of the answer. Logprobs are asked of every
  model; an answer without them (a provider that does not return them) passes this check.

A rejected answer is kept: when every later model fails, the client gets it rather than an
error. Judge calls are calls of the same serving (purpose `judge`). The last model of the
cascade (and any `fallback` after it) is accepted unchecked.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelplane.config.schema import AcceptConfig
from modelplane.errors import ProviderError
from modelplane.providers.base import Answer
from modelplane.routing.judge import answer_text, parse_score, score_request
from modelplane.routing.strategies import request_text
from modelplane.serving.validate import OutputSpec, check

if TYPE_CHECKING:
    from modelplane.serving.invoke import Invoker
    from modelplane.serving.runtime import Model
    from modelplane.serving.state import Serving

_ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True, slots=True)
class Acceptance:
    """One cascade feature's checks; `steps` is how many models of its chain are cascade steps."""

    accept: AcceptConfig
    steps: int
    judge: Model | None = None

    def prepare(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body to send: with logprobs asked for when a check needs them."""
        if self.accept.min_logprob is None or body.get("logprobs"):
            return body
        return {**body, "logprobs": True}

    def finish(self, answer: Answer, client_body: dict[str, Any]) -> Answer:
        """The answer the client gets: without logprobs it did not ask for."""
        if self.accept.min_logprob is None or client_body.get("logprobs"):
            return answer
        choices = answer.body.get("choices")
        if not isinstance(choices, list):
            return answer
        stripped = [{**c, "logprobs": None} if isinstance(c, dict) else c for c in choices]
        return dataclasses.replace(answer, body={**answer.body, "choices": stripped}, raw=None)

    async def accepts(
        self,
        invoker: Invoker,
        serving: Serving,
        model: Model,
        answer: Answer,
        depth: int,
        spec: OutputSpec | None,
        body: dict[str, Any],
        version: str,
        deadline: float | None,
    ) -> bool:
        """True to answer with it; False to escalate (the reason goes to the serving's route audit)."""
        if depth >= self.steps - 1:
            return True
        why = failed_check(self.accept, answer.body, spec)
        if why is None and self.accept.judge is not None and self.judge is not None:
            why = await self._judged(invoker, serving, answer, body, version, deadline)
        if why is None:
            return True
        if serving.route is not None:
            note = f"{model.name}: {why}; escalated"
            reason = f"{serving.route.reason}; {note}" if serving.route.reason else note
            serving.route = dataclasses.replace(serving.route, reason=reason)
        return False

    async def _judged(
        self,
        invoker: Invoker,
        serving: Serving,
        answer: Answer,
        body: dict[str, Any],
        version: str,
        deadline: float | None,
    ) -> str | None:
        assert self.accept.judge is not None and self.judge is not None
        ask = score_request(self.accept.judge.rubric, request_text(body), answer_text(answer.body))
        try:
            reply = await invoker.ask(serving, self.judge, ask, version, deadline)
        except ProviderError as exc:
            return f"judge failed ({exc.error_class})"
        score = parse_score(answer_text(reply.body))
        if score is None:
            return "judge gave no score"
        if score < self.accept.judge.min:
            return f"judge score {score:.2f} < {self.accept.judge.min:g}"
        return None


def failed_check(accept: AcceptConfig, body: dict[str, Any], spec: OutputSpec | None) -> str | None:
    """Why the answer fails the local checks (not the judge), or None when it passes them."""
    text = answer_text(body)
    if accept.not_empty and not text.strip():
        return "empty answer"
    if accept.contains is not None and accept.contains not in text:
        return f"does not contain {accept.contains!r}"
    if accept.regex is not None and re.search(accept.regex, text) is None:
        return f"does not match /{accept.regex}/"
    if accept.json_schema:
        why = _schema_error(body, spec)
        if why is not None:
            return why
    if accept.min_logprob is not None:
        mean = mean_logprob(body)
        if mean is not None and mean < accept.min_logprob:
            return f"mean logprob {mean:.3f} < {accept.min_logprob:g}"
    return None


def mean_logprob(body: dict[str, Any]) -> float | None:
    """The mean token log-probability of the first choice, or None when the provider sent none."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    logprobs = choices[0].get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return None
    values = [t["logprob"] for t in content if isinstance(t, dict) and isinstance(t.get("logprob"), int | float)]
    return sum(values) / len(values) if values else None


def _schema_error(body: dict[str, Any], spec: OutputSpec | None) -> str | None:
    strict = OutputSpec(spec.schema if spec is not None else _ANY_OBJECT, repair=False, reask=0, source="cascade")
    verdict = check(strict, body)
    return None if verdict.ok else f"schema: {verdict.error}"
