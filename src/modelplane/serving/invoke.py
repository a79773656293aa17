"""Stage 7, invoke: call the routed model and account for the call, whatever happens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from modelplane.errors import ProviderError
from modelplane.providers.base import Answer, ChatRequest, Embeddings, Stream, Usage
from modelplane.serving.runtime import Deployment
from modelplane.serving.state import Attempt, Serving


async def invoke(serving: Serving, deployment: Deployment, body: dict[str, Any], version: str) -> Answer | Stream:
    """One call to `deployment`; a stream is wrapped so its call is recorded when it ends."""
    attempt = Attempt(serving, deployment)
    serving.deployment = deployment
    try:
        reply = await deployment.provider.chat(ChatRequest(body, deployment.upstream_name, deployment.timeouts))
    except ProviderError as exc:
        attempt.done(Usage(), None, exc, version)
        raise
    if isinstance(reply, Answer):
        attempt.done(reply.usage, reply.first_token_at, None, version, reply.model)
        return reply
    return _AccountedStream(reply, attempt, version)


async def invoke_embeddings(serving: Serving, deployment: Deployment, body: dict[str, Any], version: str) -> Embeddings:
    """One embeddings call to `deployment`, accounted like a chat call."""
    attempt = Attempt(serving, deployment)
    serving.deployment = deployment
    try:
        result = await deployment.provider.embed(body, deployment.upstream_name, deployment.timeouts)
    except ProviderError as exc:
        attempt.done(Usage(), None, exc, version)
        raise
    attempt.done(result.usage, None, None, version, result.model)
    return result


class _AccountedStream(Stream):
    """Passes a provider's stream through and closes its call record when the stream ends or breaks."""

    def __init__(self, inner: Stream, attempt: Attempt, version: str) -> None:
        super().__init__(inner.model)
        self._inner, self._attempt, self._version = inner, attempt, version

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

    async def aclose(self) -> None:
        await self._inner.aclose()
