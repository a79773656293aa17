"""Output validation: parse, validate, repair, the request overriding the feature, schema files, re-asks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fakes import FakeProvider, Reply, in_process_gateway
from modelplane.config.load import parse_config
from modelplane.config.schema import OutputConfig
from modelplane.errors import BadRequest, ConfigError, ErrorClass, ProviderError
from modelplane.serving import pipeline
from modelplane.serving.state import Inbound
from modelplane.serving.validate import (
    OutputSpec,
    check,
    feature_spec,
    feature_specs,
    load_schema,
    output_spec,
    reask_body,
    schema_hint,
    with_content,
)

TICKET: dict[str, Any] = {
    "type": "object",
    "properties": {"priority": {"enum": ["low", "high"]}, "summary": {"type": "string"}},
    "required": ["priority"],
}
SPEC = OutputSpec(TICKET, repair=True, reask=2, source="feature")


def answer(content: str | None, **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, **message}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }


def test_valid_answer_passes_unchanged() -> None:
    verdict = check(SPEC, answer('{"priority": "low", "summary": "printer"}'))
    assert verdict.ok and not verdict.repaired and verdict.error is None
    assert verdict.content == '{"priority": "low", "summary": "printer"}'


@pytest.mark.parametrize(
    "content",
    [
        '{"priority": "high", "summary": "fire",}',  # trailing comma
        "{'priority': 'high', 'summary': 'fire'}",  # single quotes
        '```json\n{"priority": "high", "summary": "fire"}\n```',  # code fence
        'Here you go: {"priority": "high", "summary": "fire"}',  # prose around it
    ],
)
def test_broken_json_is_repaired_and_reencoded_compactly(content: str) -> None:
    verdict = check(SPEC, answer(content))
    assert verdict.ok and verdict.repaired and verdict.error is None
    assert verdict.content == '{"priority":"high","summary":"fire"}'


def test_repair_disabled_reports_the_parse_error() -> None:
    spec = OutputSpec(TICKET, repair=False, reask=0, source="feature")
    verdict = check(spec, answer('{"priority": "high",}'))
    assert not verdict.ok and not verdict.repaired
    assert verdict.error is not None and verdict.error.startswith("not valid JSON")


def test_prose_cannot_be_repaired() -> None:
    verdict = check(SPEC, answer("I am sorry, I cannot help with that."))
    assert not verdict.ok and not verdict.repaired
    assert verdict.content == "I am sorry, I cannot help with that."
    assert verdict.error is not None and verdict.error.startswith("not valid JSON")


def test_schema_violation_names_the_path_and_the_reason() -> None:
    verdict = check(SPEC, answer('{"priority": "urgent"}'))
    assert not verdict.ok
    assert verdict.error == "$.priority: 'urgent' is not one of ['low', 'high']"
    assert check(SPEC, answer("{}")).error == "$: 'priority' is a required property"


def test_repaired_json_that_breaks_the_schema_still_fails() -> None:
    verdict = check(SPEC, answer("{'priority': 'urgent'}"))
    assert not verdict.ok and not verdict.repaired
    assert verdict.error == "$.priority: 'urgent' is not one of ['low', 'high'] (after repairing invalid JSON)"


def test_long_errors_are_cut_short() -> None:
    verdict = check(OutputSpec({"type": "string"}, True, 0, "request"), answer(orjson.dumps(list(range(500))).decode()))
    assert verdict.error is not None and len(verdict.error) <= 300 and verdict.error.endswith("…")


def test_tool_calls_without_content_are_not_validated() -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert check(SPEC, answer(None, tool_calls=calls)).ok
    empty = check(SPEC, answer(None))
    assert not empty.ok and empty.error == "the answer has no content"


def test_request_json_schema_wins_over_the_feature() -> None:
    feature = feature_spec(OutputConfig(json_schema=TICKET, reask=3), None)
    schema = {"type": "object", "required": ["answer"]}
    body = {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}}}
    spec = output_spec(feature, body)
    assert spec == OutputSpec(schema, repair=True, reask=3, source="request")
    assert output_spec(None, body) == OutputSpec(schema, repair=True, reask=1, source="request")
    # Without a response_format, or with a text one, the feature's spec applies.
    assert output_spec(feature, {}) is feature
    assert output_spec(feature, {"response_format": {"type": "text"}}) is feature
    assert output_spec(None, {"messages": []}) is None


def test_json_object_asks_for_any_object() -> None:
    spec = output_spec(None, {"response_format": {"type": "json_object"}})
    assert spec is not None and spec.schema == {"type": "object"} and spec.source == "request"
    assert check(spec, answer('{"anything": [1, 2]}')).ok
    assert check(spec, answer("[1, 2]")).error == "$: [1, 2] is not of type 'object'"


def test_an_invalid_request_schema_is_a_bad_request() -> None:
    body = {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "nope"}}}}
    with pytest.raises(BadRequest, match="not a valid JSON Schema") as caught:
        output_spec(None, body)
    assert caught.value.param == "response_format"


def test_feature_without_a_schema_validates_nothing() -> None:
    assert feature_spec(OutputConfig(), None) is None


def test_schema_files_load_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "ticket.json").write_bytes(orjson.dumps(TICKET))
    (tmp_path / "schemas" / "ticket.yaml").write_text("type: object\nrequired: [priority]\n")
    assert load_schema("schemas/ticket.json", tmp_path) == TICKET
    assert load_schema("schemas/ticket.yaml", tmp_path) == {"type": "object", "required": ["priority"]}


def test_bad_schemas_are_config_errors_with_their_path(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"type": 12}')
    (tmp_path / "list.yaml").write_text("- 1\n")
    config = parse_config(
        """
providers: {up: {kind: openai, base_url: "http://127.0.0.1:1/v1", api_key: k}}
models: {small: {provider: up}}
features:
  fine: {route: {models: [small]}, output: {json_schema: {type: object}}}
  plain: {route: {models: [small]}}
  missing: {route: {models: [small]}, output: {json_schema: nowhere.json}}
  invalid: {route: {models: [small]}, output: {json_schema: bad.json}}
  listed: {route: {models: [small]}, output: {json_schema: list.yaml}}
  inline: {route: {models: [small]}, output: {json_schema: {type: object, minProperties: -1}}}
""",
        env={},
    )
    with pytest.raises(ConfigError) as caught:
        feature_specs(config, tmp_path)
    issues = {issue.path: issue.message for issue in caught.value.issues}
    assert sorted(issues) == [
        f"features.{name}.output.json_schema" for name in ("inline", "invalid", "listed", "missing")
    ]
    assert "cannot read schema file" in issues["features.missing.output.json_schema"]
    assert issues["features.invalid.output.json_schema"].startswith("not a valid JSON Schema: $.type: 12")
    assert "must hold a JSON Schema object" in issues["features.listed.output.json_schema"]
    with pytest.raises(ConfigError, match="needs a config file"):
        load_schema("ticket.json", None)


def test_feature_specs_of_a_good_config() -> None:
    config = parse_config(
        """
providers: {up: {kind: openai, base_url: "http://127.0.0.1:1/v1", api_key: k}}
models: {small: {provider: up}}
features:
  tickets: {route: {models: [small]}, output: {json_schema: {type: object}, repair: false, reask: 0}}
  chat: {route: {models: [small]}}
""",
        env={},
    )
    assert feature_specs(config, None) == {"tickets": OutputSpec({"type": "object"}, False, 0, "feature")}


def test_with_content_copies() -> None:
    original = answer('{"priority": "high",}')
    fixed = with_content(original, '{"priority":"high"}')
    assert fixed["choices"][0]["message"] == {"role": "assistant", "content": '{"priority":"high"}'}
    assert fixed["usage"] == original["usage"] and fixed["id"] == original["id"]
    assert original["choices"][0]["message"]["content"] == '{"priority": "high",}'


def test_reask_body_shows_the_bad_answer_and_what_was_wrong() -> None:
    body = {"model": "tickets", "messages": [{"role": "user", "content": "triage this"}], "temperature": 0}
    asked = reask_body(body, SPEC, '{"priority": "urgent"}', "$.priority: 'urgent' is not one of ['low', 'high']")
    assert body["messages"] == [{"role": "user", "content": "triage this"}]  # the original is untouched
    assert asked["temperature"] == 0 and asked["model"] == "tickets"
    assert asked["messages"][:2] == [
        {"role": "user", "content": "triage this"},
        {"role": "assistant", "content": '{"priority": "urgent"}'},
    ]
    correction = asked["messages"][2]
    assert correction["role"] == "user"
    assert "$.priority: 'urgent' is not one of ['low', 'high']" in correction["content"]
    assert orjson.dumps(TICKET).decode() in correction["content"]


class _Grammared(FakeProvider):
    """A model that follows a response_format schema (as the local model's grammar does)."""

    follows_schema = True


async def test_a_model_that_follows_a_schema_is_sent_the_features_and_others_the_clients_body(
    tmp_path: Path,
) -> None:
    config = """
providers:
  remote: {kind: openai, base_url: "http://127.0.0.1:1/v1"}
  local: {kind: openai, base_url: "http://127.0.0.1:1/v1"}
models:
  remote-model: {provider: remote, price: {input: 1, output: 1}}
  local-small: {provider: local, price: {input: 0, output: 0}}
features:
  ticket:
    route: {models: [remote-model], fallback: [local-small]}
    output: {json_schema: {type: object, required: [priority], properties: {priority: {enum: [low, high]}}}}
resilience: {retry: {attempts: 1}}
"""
    remote = FakeProvider("remote", [Reply(error=ProviderError(ErrorClass.SERVER_ERROR, "down"))])
    local = _Grammared("local", [Reply(content='{"priority": "high"}')])
    gateway = await in_process_gateway(config, tmp_path, {"remote": remote, "local": local})
    try:
        body = {"model": "ticket", "messages": [{"role": "user", "content": "the server room is on fire"}]}
        outcome = await pipeline.chat(gateway, Inbound(orjson.dumps(body)))
    finally:
        await gateway.close()
    assert orjson.loads(outcome.body or b"")["choices"][0]["message"]["content"] == '{"priority": "high"}'
    assert "response_format" not in remote.requests[0].body  # the client's body, as it sent it
    hinted = local.requests[0].body["response_format"]
    assert hinted["type"] == "json_schema" and hinted["json_schema"]["schema"]["required"] == ["priority"]


def test_the_clients_own_response_format_is_never_replaced() -> None:
    feature = feature_spec(OutputConfig(json_schema=TICKET), None)
    body = {"response_format": {"type": "json_object"}}
    assert schema_hint(body, output_spec(feature, body)) is None
    assert schema_hint({}, None) is None
    assert schema_hint({}, feature) == {
        "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": TICKET}}
    }
