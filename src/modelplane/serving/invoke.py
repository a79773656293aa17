"""Stage 7, invoke: get an answer from the feature's chain, whatever fails on the way.

For each model of the chain, in order: pick a deployment (balanced, skipping open
breakers), call it, and on a failure the adapter classified as worth it, retry with
exponential backoff and full jitter, honouring `retry-after`, within the model's attempts,
the retry budget and the feature's deadline. Then the next model; after the last, the
deterministic answer if the feature has one. Every attempt is a call in the ledger under
the one serving. A stream counts as answered only once its first chunk arrived, so an
upstream that fails or stalls before its first byte is failed over like any other. A model
whose provider cannot give what the request asks (several choices, logprobs, images: see
capability.py) is skipped; a model whose every breaker is open is not called, and when that is
all that kept the chain from answering, the client is told when the first breaker will probe.

Adapters classify; this controller alone decides.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from modelplane.config.schema import FeatureConfig, RetryConfig
from modelplane.errors import CircuitOpen, ErrorClass, InvalidOutput, ProviderError
from modelplane.providers.base import Answer, ChatRequest, Embeddings, Stream, Timeouts, Usage
from modelplane.serving.balance import Balancer
from modelplane.serving.breaker import DEPLOYMENT_FAULTS, BreakerBackend, Permit
from modelplane.serving.capability import needs, one_choice, require, unmet
from modelplane.serving.cascade import Acceptance
from modelplane.serving.fallback import deterministic_answer
from modelplane.serving.replay import Replay
from modelplane.serving.retry import RetryBudget, backoff
from modelplane.serving.runtime import Deployment, Model
from modelplane.serving.state import Attempt, Serving
from modelplane.serving.validate import OutputSpec, check, reask_body, schema_hint, with_content

RETRYABLE = frozenset(
    {ErrorClass.RATE_LIMIT, ErrorClass.TIMEOUT, ErrorClass.SERVER_ERROR, ErrorClass.CONNECTION, ErrorClass.BAD_RESPONSE}
)


Escalate = Callable[[str, str], Awaitable[None]]  # (reason, last output): into the escalation queue


@dataclass
class Invoker:
    """The gateway's resilience: breakers, balancing and the retry budget, shared by every serving."""

    breakers: BreakerBackend
    balancer: Balancer
    budget: RetryBudget
    retry: RetryConfig
    rng: random.Random

    async def chat(
        self,
        serving: Serving,
        chain: tuple[Model, ...],
        feature: FeatureConfig,
        body: dict[str, Any],
        version: str,
        spec: OutputSpec | None = None,
        escalate: Escalate | None = None,
        cascade: Acceptance | None = None,
    ) -> Answer | Stream:
        """The first (valid, and for a cascade accepted) answer the chain gives; else a cascade's last
        rejected answer; else the deterministic answer; else the last error."""
        deadline = None if feature.deadline is None else serving.started + feature.deadline
        wanted = needs(body)
        require(chain, wanted)
        if (spec is not None and spec.source == "feature") or cascade is not None:
            # A request's own response_format with n > 1 is served as before: its first choice is checked.
            one_choice(body, "validates its output" if spec is not None else "is a cascade")
        streamed = bool(body.get("stream"))
        usage_asked = ChatRequest(body, "").include_usage
        if (spec is not None or cascade is not None) and streamed:
            # An answer must be whole to be validated (or checked) before the product sees any
            # of it: ask for it unstreamed, then replay it as a stream.
            body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        sent = body if cascade is None else cascade.prepare(body)
        hinted = schema_hint(sent, spec)  # for models that follow a schema: the feature's, as a grammar
        errors: list[ProviderError] = []
        invalid: InvalidOutput | None = None  # the last answer that failed validation, if any did
        rejected: tuple[int, Model, Answer] | None = None  # a cascade's last answer that failed its checks
        refused: list[int] = []  # the depths whose answers a cascade's checks refused
        tried = 0  # models asked so far: one skipped for what it cannot give is no step down the chain
        for position, model in enumerate(chain):
            if wanted and unmet(model, wanted) is not None:
                continue  # it would drop part of the request (`require` made sure some model would not)
            depth, tried = tried, tried + 1
            serving.fallback_depth = depth
            asked = hinted if hinted is not None and _follows_schema(model) else sent
            try:
                reply = await self._model(serving, model, asked, version, deadline)
                if spec is not None:
                    reply = await self._validated(serving, model, reply, spec, asked, version, deadline)
                if cascade is None:
                    return reply if spec is None else _replay(reply, streamed, usage_asked)
                assert isinstance(reply, Answer)  # cascades ask unstreamed
                if await cascade.accepts(self, serving, model, reply, position, spec, body, version, deadline):
                    serving.cascade_escalations = len(refused)
                    return _replay(cascade.finish(reply, body), streamed, usage_asked)
                rejected = (depth, model, reply)
                refused.append(depth)
            except ProviderError as exc:
                if exc.error_class is ErrorClass.BAD_REQUEST:
                    raise  # the request itself is wrong: no other model can fix it
                errors.append(exc)
                if isinstance(exc, InvalidOutput):
                    invalid = exc
            if deadline is not None and time.perf_counter() >= deadline:
                break
        if rejected is not None and cascade is not None:  # the stronger models failed: a rejected answer beats none
            serving.fallback_depth, serving.model = rejected[0], rejected[1].name
            serving.cascade_escalations = sum(1 for depth in refused if depth < rejected[0])
            return _replay(cascade.finish(rejected[2], body), streamed, usage_asked)
        if invalid is not None and escalate is not None:
            await escalate(invalid.message, invalid.last_output)
        text = feature.route.deterministic_fallback
        if text is not None:
            serving.fallback_depth = tried
            serving.model = "deterministic"
            n = body.get("n")
            return _replay(deterministic_answer(text, n if isinstance(n, int) and n > 1 else 1), streamed, usage_asked)
        raise _failure(errors)

    async def _validated(
        self,
        serving: Serving,
        model: Model,
        reply: Answer | Stream,
        spec: OutputSpec,
        body: dict[str, Any],
        version: str,
        deadline: float | None,
    ) -> Answer:
        """The answer if it passes (repaired if need be); else re-ask the model, at most `spec.reask` times."""
        assert isinstance(reply, Answer)  # validated requests are made unstreamed
        for asked in range(spec.reask + 1):
            verdict = check(spec, reply.body)
            if verdict.ok:
                if verdict.repaired:
                    return Answer(with_content(reply.body, verdict.content), reply.usage, reply.model)
                return reply
            if asked == spec.reask:
                break
            again = await self._model(
                serving, model, reask_body(body, spec, verdict.content, verdict.error or ""), version, deadline
            )
            assert isinstance(again, Answer)
            reply = again
        raise InvalidOutput(f"'{model.name}' answered invalid output: {verdict.error}", verdict.content)

    async def _model(
        self, serving: Serving, model: Model, body: dict[str, Any], version: str, deadline: float | None
    ) -> Answer | Stream:
        """One model of the chain: its deployments, with retries. Raises the last failure."""
        last_error: ProviderError | None = None
        failed: set[str] = set()  # a retry goes to another deployment when the model has one
        for attempt in range(self.retry.attempts):
            if attempt == 0:
                self.budget.deposit()
            elif not self.budget.withdraw():
                break  # retries are over budget: an outage must not multiply the load
            picked = await self._pick(model, failed)
            if picked is None:
                last_error = last_error or await self._circuit_open(model)
                break
            deployment, permit = picked
            timeouts = _within(model.timeouts, deadline)
            if timeouts is None:
                last_error = last_error or ProviderError(
                    ErrorClass.TIMEOUT, f"the feature's deadline ran out before '{model.name}' was called"
                )
                break
            try:
                return await self._call(serving, model, deployment, permit, body, version, timeouts)
            except ProviderError as exc:
                last_error = exc
                failed.add(deployment.key)
                if exc.error_class not in RETRYABLE or attempt + 1 >= self.retry.attempts:
                    break
                wait = backoff(attempt, exc.retry_after, self.retry, self.rng)
                if wait is None or (deadline is not None and time.perf_counter() + wait >= deadline):
                    break
                await asyncio.sleep(wait)
        assert last_error is not None
        raise last_error

    async def ask(
        self,
        serving: Serving,
        model: Model,
        body: dict[str, Any],
        version: str,
        deadline: float | None = None,
        purpose: str = "judge",
    ) -> Answer:
        """One unstreamed answer from `model` for work around the serving (a judge, a shadow answer):
        its calls count toward the serving, marked with `purpose`; the serving's answer stays its own."""
        answered, first = serving.model, len(serving.calls)
        try:
            reply = await self._model(serving, model, body, version, deadline)
        finally:
            serving.model = answered
            for call in serving.calls[first:]:
                call.purpose = purpose
        assert isinstance(reply, Answer)  # `body` does not ask for a stream
        return reply

    async def _circuit_open(self, model: Model) -> CircuitOpen:
        """The error for a model not called because every deployment's breaker is open."""
        waits = [await self.breakers.retry_in(d.key) for d in model.deployments]
        known = [wait for wait in waits if wait is not None]
        return CircuitOpen((model.name,), min(known, default=self.breakers.config.cooldown))

    async def _pick(
        self, model: Model, avoid: set[str] | frozenset[str] = frozenset()
    ) -> tuple[Deployment, Permit] | None:
        ordered = self.balancer.order(model.deployments)
        fresh = [d for d in ordered if d.key not in avoid]
        for deployment in fresh + [d for d in ordered if d.key in avoid]:
            permit = await self.breakers.acquire(deployment.key)
            if permit is not Permit.DENY:
                return deployment, permit
        return None

    async def _call(
        self,
        serving: Serving,
        model: Model,
        deployment: Deployment,
        permit: Permit,
        body: dict[str, Any],
        version: str,
        timeouts: Timeouts,
    ) -> Answer | Stream:
        attempt = Attempt(serving, model, deployment)
        self.balancer.started(deployment)
        try:
            reply = await deployment.provider.chat(ChatRequest(body, deployment.upstream_name, timeouts))
        except ProviderError as exc:
            attempt.done(Usage(), None, exc, version)
            self._outcome(deployment, permit, attempt, exc)
            raise
        if isinstance(reply, Stream):
            return await self._primed(reply, attempt, permit, version)
        attempt.done(reply.usage, reply.first_token_at, None, version, reply.model)
        self._outcome(deployment, permit, attempt, None)
        serving.model = model.name
        return reply

    async def _primed(self, reply: Stream, attempt: Attempt, permit: Permit, version: str) -> Stream:
        """Wait for the first chunk: until then a failing or stalling stream can still fail over."""

        def outcome(error: ProviderError | None) -> None:
            self._outcome(attempt.deployment, permit, attempt, error)

        stream = _AccountedStream(reply, attempt, version, outcome)
        chunks = stream.chunks()
        first = await anext(chunks, None)
        attempt.serving.model = attempt.model.name
        return _PrimedStream(stream, first, chunks)

    def _outcome(self, deployment: Deployment, permit: Permit, attempt: Attempt, error: ProviderError | None) -> None:
        ok = error is None or error.error_class not in DEPLOYMENT_FAULTS
        self.balancer.finished(deployment, time.perf_counter() - attempt.started, ok)
        self.breakers.record(deployment.key, ok, permit)

    async def embeddings(self, serving: Serving, model: Model, body: dict[str, Any], version: str) -> Embeddings:
        """One embeddings call to the model's chosen deployment, accounted like a chat call."""
        picked = await self._pick(model)
        if picked is None:
            raise await self._circuit_open(model)
        deployment, permit = picked
        attempt = Attempt(serving, model, deployment)
        self.balancer.started(deployment)
        try:
            result = await deployment.provider.embed(body, deployment.upstream_name, model.timeouts)
        except ProviderError as exc:
            attempt.done(Usage(), None, exc, version)
            self._outcome(deployment, permit, attempt, exc)
            raise
        attempt.done(result.usage, None, None, version, result.model)
        self._outcome(deployment, permit, attempt, None)
        serving.model = model.name
        return result


def _failure(errors: list[ProviderError]) -> ProviderError:
    """What the client hears when the chain gave no answer: the last real failure; or, when open
    breakers alone held every model back, that, with the soonest probe as `retry_after`."""
    failures = [exc for exc in errors if not isinstance(exc, CircuitOpen)]
    if failures:
        return failures[-1]
    held = [exc for exc in errors if isinstance(exc, CircuitOpen)]
    if not held:  # every model skipped: `require` refuses such a request before the loop
        return ProviderError(ErrorClass.CONNECTION, "no model of the chain could be called")
    return CircuitOpen(tuple(name for exc in held for name in exc.models), min(exc.retry_after or 0.0 for exc in held))


def _replay(reply: Answer | Stream, streamed: bool, include_usage: bool) -> Answer | Stream:
    """A whole answer, as the stream the client asked for."""
    if streamed and isinstance(reply, Answer):
        return Replay(reply, include_usage=include_usage)
    return reply


def _within(timeouts: Timeouts, deadline: float | None) -> Timeouts | None:
    """The model's timeouts, cut to what is left of the feature's deadline (None: nothing left)."""
    if deadline is None:
        return timeouts
    left = deadline - time.perf_counter()
    if left <= 0:
        return None
    return Timeouts(min(timeouts.connect, left), min(timeouts.first_token, left), min(timeouts.total, left))


class _AccountedStream(Stream):
    """Passes a provider's stream through; when it ends or breaks, closes its call record."""

    def __init__(
        self, inner: Stream, attempt: Attempt, version: str, outcome: Callable[[ProviderError | None], None]
    ) -> None:
        super().__init__(inner.model)
        self._inner, self._attempt, self._version, self._outcome = inner, attempt, version, outcome

    async def chunks(self) -> AsyncIterator[bytes]:
        error: ProviderError | None = None
        try:
            async for chunk in self._inner.chunks():
                yield chunk
        except ProviderError as exc:
            error = exc
            raise
        finally:
            self.usage, self.model, self.finish_reason = self._inner.usage, self._inner.model, self._inner.finish_reason
            self.first_token_at = self._inner.first_token_at
            self._attempt.done(self.usage, self.first_token_at, error, self._version, self.model)
            self._outcome(error)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _PrimedStream(Stream):
    """A stream whose first chunk has already arrived."""

    def __init__(self, inner: _AccountedStream, first: bytes | None, rest: AsyncIterator[bytes]) -> None:
        super().__init__(inner.model)
        self._inner, self._first, self._rest = inner, first, rest

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._first is not None:
            yield self._first
        async for chunk in self._rest:
            yield chunk
        self.usage, self.model, self.finish_reason = self._inner.usage, self._inner.model, self._inner.finish_reason
        self.first_token_at = self._inner.first_token_at

    async def aclose(self) -> None:
        await self._inner.aclose()


def _follows_schema(model: Model) -> bool:
    return all(deployment.provider.follows_schema for deployment in model.deployments)
