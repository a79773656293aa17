"""What a request asks beyond plain chat (several choices, logprobs, images) never reaches a model
that would drop it silently: the model is skipped, or, when no model of the chain can, a 400.

The local model is the real `LlamaCppProvider` class (its capabilities are what is under test)
with no weights loaded: it answers a canned reply and notes every request that reached it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelplane.config.load import LoadedConfig, parse_config
from modelplane.errors import BadRequest, ProviderError
from modelplane.ledger.store import LedgerStore
from modelplane.providers.base import Answer, ChatRequest, Stream, Usage
from modelplane.providers.llamacpp import LlamaCppProvider
from modelplane.serving import pipeline
from modelplane.serving.gateway import Gateway
from modelplane.serving.state import Inbound
from upstream import ScriptedUpstream, error, ok

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


class UnloadedLocal(LlamaCppProvider):
    def __init__(self, name: str, model_path: Path) -> None:
        super().__init__(name, model_path=model_path)
        self.asked: list[ChatRequest] = []

    async def start(self) -> None:
        """No weights: generating is not what these tests are about."""

    async def chat(self, request: ChatRequest) -> Answer | Stream:
        self.asked.append(request)
        message = {"role": "assistant", "content": "local answer"}
        body = {
            "id": "local",
            "object": "chat.completion",
            "model": "local",
            "choices": [{"index": 0, "message": message}],
        }
        return Answer(body, Usage(input_tokens=1, output_tokens=2), "local")


def config(remote_url: str) -> str:
    return f"""
providers:
  remote: {{kind: openai, base_url: "{remote_url}"}}
  local: {{kind: llamacpp, model: "bundled:gemma-3-270m"}}
models:
  remote-model: {{provider: remote, name: up-remote, price: {{input: 1, output: 2}}}}
  local-small: {{provider: local, price: {{input: 0, output: 0}}}}
features:
  local-only: {{route: {{models: [local-small]}}}}
  with-fallback: {{route: {{models: [remote-model], fallback: [local-small]}}}}
  local-first: {{route: {{models: [local-small], fallback: [remote-model]}}}}
  validated: {{route: {{models: [remote-model]}}, output: {{json_schema: {{type: object}}}}}}
resilience: {{retry: {{attempts: 1}}}}
"""


@pytest.fixture
async def remote() -> AsyncIterator[ScriptedUpstream]:
    async with ScriptedUpstream() as up:
        yield up


@pytest.fixture
def local(tmp_path: Path) -> UnloadedLocal:
    return UnloadedLocal("local", tmp_path / "never-loaded.gguf")


@pytest.fixture
async def gateway(remote: ScriptedUpstream, local: UnloadedLocal, tmp_path: Path) -> AsyncIterator[Gateway]:
    parsed = parse_config(config(remote.base_url), env={})
    parsed = parsed.model_copy(
        update={"ledger": parsed.ledger.model_copy(update={"url": f"sqlite:///{tmp_path}/l.db"})}
    )
    started = await Gateway.start(LoadedConfig(parsed, "v-cap", "test", False, tmp_path), providers={"local": local})
    yield started
    await started.close()


def ask(feature: str, content: Any = "hi", **extra: Any) -> Inbound:
    body = {"model": feature, "messages": [{"role": "user", "content": content}], **extra}
    return Inbound(orjson.dumps(body))


@pytest.mark.parametrize(
    ("extra", "content", "param", "cannot"),
    [
        ({"logprobs": True}, "hi", "logprobs", "give log-probabilities"),
        ({"n": 2}, "hi", "n", "give several choices (n = 2)"),
        ({}, [{"type": "text", "text": "what is this?"}, IMAGE], "messages[0].content[1]", "take 'image_url'"),
    ],
)
async def test_what_the_local_model_cannot_give_is_a_400_naming_the_field(
    gateway: Gateway,
    local: UnloadedLocal,
    tmp_path: Path,
    extra: dict[str, Any],
    content: Any,
    param: str,
    cannot: str,
) -> None:
    with pytest.raises(BadRequest) as caught:
        await pipeline.chat(gateway, ask("local-only", content, **extra))
    assert local.asked == []
    assert caught.value.param == param and caught.value.type == "invalid_request_error"
    assert f"model 'local-small' (llamacpp provider) cannot {cannot}" in caught.value.message
    await gateway.recorder.writer.close()
    store = LedgerStore.from_url(f"sqlite:///{tmp_path}/l.db")
    try:
        (row,) = await store.servings()
        assert (row["status"], row["http_status"]) == ("error", 400)
        assert await store.calls_for(str(row["id"])) == []  # refused before any call
    finally:
        await store.close()


async def test_plain_requests_still_reach_the_local_model(gateway: Gateway, local: UnloadedLocal) -> None:
    outcome = await pipeline.chat(gateway, ask("local-only", temperature=0, n=1, logprobs=False))
    assert outcome.headers["x-modelplane-model"] == "local-small" and len(local.asked) == 1


async def test_a_model_that_can_answers_with_the_request_whole(gateway: Gateway, remote: ScriptedUpstream) -> None:
    remote.script(ok("a cat"))
    content = [{"type": "text", "text": "what is this?"}, IMAGE]
    outcome = await pipeline.chat(gateway, ask("with-fallback", content, n=2, logprobs=True))
    assert outcome.headers["x-modelplane-model"] == "remote-model"
    sent = remote.last.json
    assert sent["n"] == 2 and sent["logprobs"] is True and sent["messages"][0]["content"][1] == IMAGE


async def test_a_fallback_that_would_drop_the_image_is_skipped(
    gateway: Gateway, remote: ScriptedUpstream, local: UnloadedLocal
) -> None:
    remote.default = error(500)
    content = [{"type": "text", "text": "what is this?"}, IMAGE]
    with pytest.raises(ProviderError) as caught:
        await pipeline.chat(gateway, ask("with-fallback", content))
    # The remote model's failure, not a text-only answer from the local model that never saw the image.
    assert caught.value.status == 500 and remote.count() == 1 and local.asked == []
    outcome = await pipeline.chat(gateway, ask("with-fallback"))  # a text request does fall back
    assert outcome.headers["x-modelplane-model"] == "local-small" and len(local.asked) == 1


async def test_several_choices_where_one_is_validated_is_a_400(gateway: Gateway, remote: ScriptedUpstream) -> None:
    with pytest.raises(BadRequest) as caught:
        await pipeline.chat(gateway, ask("validated", n=3))
    assert caught.value.param == "n" and "validates its output" in caught.value.message
    assert remote.count() == 0


async def test_a_model_skipped_for_what_it_cannot_give_is_not_a_step_down_the_chain(
    gateway: Gateway, remote: ScriptedUpstream, local: UnloadedLocal
) -> None:
    remote.script(ok("a cat"))
    content = [{"type": "text", "text": "what is this?"}, IMAGE]
    outcome = await pipeline.chat(gateway, ask("local-first", content))
    # The first model that could answer did: not a fallback (a model failing), so the report does not count it.
    assert outcome.headers["x-modelplane-model"] == "remote-model" and local.asked == []
    assert outcome.headers["x-modelplane-fallback"] == "0"


async def test_a_requests_own_json_format_with_several_choices_is_served(
    gateway: Gateway, remote: ScriptedUpstream
) -> None:
    # Only a feature's own output check is limited to one choice; OpenAI serves n > 1 with JSON mode.
    remote.script(ok('{"a": 1}'))
    outcome = await pipeline.chat(gateway, ask("with-fallback", n=2, response_format={"type": "json_object"}))
    assert outcome.headers["x-modelplane-model"] == "remote-model" and remote.last.json["n"] == 2
