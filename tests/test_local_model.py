"""The embedded default: `modelplane serve` with no config answers from the real bundled local model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

if TYPE_CHECKING:
    from gateways import GatewayProcess

pytestmark = pytest.mark.localmodel

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Write one sentence about the sea."}]


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, launch_gateway: Callable[..., GatewayProcess]
) -> Iterator[GatewayProcess]:
    # cwd is an empty folder, so no ./modelplane.yaml is found and the embedded default is used.
    root = tmp_path_factory.mktemp("local")
    process = launch_gateway(root, root / "home", None, ready_timeout=60.0)
    yield process
    assert process.stop() == 0, process.stderr


def client(gateway: GatewayProcess) -> openai.OpenAI:
    # No API keys in the embedded default: any key is accepted on loopback.
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_the_startup_line_says_local_only(gateway: GatewayProcess) -> None:
    startup = " ".join(gateway.stderr.split())  # rich wraps long lines
    assert "embedded default" in startup
    assert "local only (127.0.0.1)" in startup
    assert f"127.0.0.1:{gateway.port}" in startup


def test_a_chat_answer_from_the_bundled_model(gateway: GatewayProcess) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="chat",
        messages=HI,
        max_tokens=16,
    )
    completion = raw.parse()
    content = completion.choices[0].message.content
    assert isinstance(content, str) and content.strip()
    assert completion.usage is not None
    assert 0 < completion.usage.completion_tokens <= 16
    assert completion.usage.prompt_tokens > 0
    assert raw.headers["x-modelplane-model"] == "local-small"
    assert float(raw.headers["x-modelplane-cost-usd"]) == 0.0  # the local model is priced at 0


def test_the_bundled_model_answers_the_question_not_an_echo(gateway: GatewayProcess) -> None:
    """A base model with the wrong turn format echoes the question; the transcript format answers it."""
    completion = client(gateway).chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0,
    )
    content = completion.choices[0].message.content or ""
    assert "Paris" in content
    assert "What is the capital" not in content


def test_a_streamed_answer_from_the_bundled_model(gateway: GatewayProcess) -> None:
    stream = client(gateway).chat.completions.create(
        model="chat",
        messages=HI,
        max_tokens=16,
        stream=True,
    )
    deltas = [chunk.choices[0].delta.content for chunk in stream if chunk.choices]
    assert any(delta for delta in deltas)
    assert (Path(gateway.home) / "ledger.db").is_file()


def test_generation_does_not_block_the_event_loop(gateway: GatewayProcess) -> None:
    """While the model generates in its worker thread, the gateway keeps answering."""
    import threading
    import time

    import httpx

    finished = threading.Event()

    def generate() -> None:
        try:
            client(gateway).chat.completions.create(model="chat", messages=HI, max_tokens=200)
        finally:
            finished.set()

    worker = threading.Thread(target=generate)
    worker.start()
    health_answers = 0
    while not finished.is_set():
        answered = httpx.get(gateway.url + "/healthz", timeout=5.0)
        assert answered.status_code == 200
        if not finished.is_set():
            health_answers += 1
        time.sleep(0.01)
    worker.join()
    assert health_answers >= 3, "the gateway stopped answering while the local model generated"
