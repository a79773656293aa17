"""Test doubles for the eval tests: a provider that answers by rule, and a scripted judge."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakes import in_process_gateway
from modelplane.evals.judges import Judge
from modelplane.providers.base import Answer, ChatRequest, Provider, Usage
from modelplane.serving.gateway import Gateway

CONFIG = """
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  small: {provider: fake, name: small-1, price: {input: 1.0, output: 2.0}}
  judge: {provider: fake, name: judge-1, price: {input: 0, output: 0}}
features:
  support: {route: {strategy: single, models: [small]}}
"""


def last_user(request: ChatRequest) -> str:
    messages = request.body.get("messages") or []
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return str(users[-1]) if users else ""


class RuleProvider(Provider):
    """Answers `rule(request)`; judge-model requests take the next scripted judge reply.

    Counts calls and the most requests in flight at once (with `delay`, to see concurrency)."""

    kind = "openai"

    def __init__(self, rule: Callable[[ChatRequest], str] | None = None, delay: float = 0.0) -> None:
        super().__init__("fake")
        self.rule = rule or (lambda request: f"echo: {last_user(request)}")
        self.delay = delay
        self.judge_replies: deque[str] = deque()
        self.calls: list[ChatRequest] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def chat(self, request: ChatRequest) -> Answer:
        self.calls.append(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if request.model == "judge-1":
                text = self.judge_replies.popleft() if self.judge_replies else '{"score": 1, "reason": "fine"}'
            else:
                text = self.rule(request)
        finally:
            self.in_flight -= 1
        usage = Usage(input_tokens=10, output_tokens=5)
        body = {
            "id": "x",
            "object": "chat.completion",
            "model": request.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        }
        return Answer(body, usage, request.model)

    def answered(self, model: str = "small-1") -> int:
        return sum(1 for c in self.calls if c.model == model)


async def gateway_with(provider: Provider, tmp_path: Path, config: str = CONFIG) -> Gateway:
    return await in_process_gateway(config, tmp_path, {"fake": provider})


def scripted_judge(*replies: str, model: str = "judge") -> tuple[Judge, list[list[dict[str, Any]]]]:
    """A judge answering `replies` in order; also returns the messages it was sent."""
    queue = deque(replies)
    sent: list[list[dict[str, Any]]] = []

    async def complete(messages: list[dict[str, Any]]) -> str:
        sent.append(messages)
        if not queue:
            raise RuntimeError("the scripted judge has no more replies")
        return queue.popleft()

    return Judge(model, complete), sent
