"""Stage 8, validate output: check a chat answer against a JSON Schema, repair it, or say why not.

    spec = output_spec(feature_spec, body)          # the request's response_format wins
    verdict = check(spec, answer)                   # parse → validate → repair → re-validate
    if verdict.ok and verdict.repaired: answer = with_content(answer, verdict.content)
    if not verdict.ok: body = reask_body(body, spec, verdict.content, verdict.error)

The invoke loop owns what happens next (re-ask, next model, escalation); these functions only
decide. Schemas from the config are loaded and checked once per config (`feature_specs`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import yaml
from json_repair import repair_json
from jsonschema import exceptions as schema_errors
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from modelplane.config.schema import Config, OutputConfig
from modelplane.errors import BadRequest, ConfigError, ConfigIssue

_JSON_OBJECT: dict[str, Any] = {"type": "object"}
_MAX_ERROR = 300  # characters: jsonschema quotes whole instances, which can be huge


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """What an answer must be: JSON matching `schema`; how hard to try before giving up."""

    schema: dict[str, Any]
    repair: bool
    reask: int  # how many times the model may be asked again, per model in the chain
    source: str  # "feature" or "request"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of `check`: `content` is the repaired JSON when `repaired`, else the answer's own."""

    ok: bool
    content: str
    repaired: bool = False
    error: str | None = None


def load_schema(
    value: dict[str, Any] | str, config_dir: Path | None, where: str = "output.json_schema"
) -> dict[str, Any]:
    """An inline schema, or one read from a JSON/YAML file relative to `config_dir`; checked either way."""
    schema = _read_schema_file(value, config_dir, where) if isinstance(value, str) else value
    try:
        _compiled(_key(schema))
    except schema_errors.SchemaError as exc:
        raise ConfigError([ConfigIssue(where, f"not a valid JSON Schema: {_describe(exc)}")]) from exc
    return schema


def feature_specs(config: Config, config_dir: Path | None) -> dict[str, OutputSpec]:
    """The spec of every feature that validates its output; one ConfigError naming every bad schema."""
    specs: dict[str, OutputSpec] = {}
    issues: list[ConfigIssue] = []
    for name, feature in config.features.items():
        if feature.output is None:
            continue
        try:
            spec = feature_spec(feature.output, config_dir, f"features.{name}.output.json_schema")
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        if spec is not None:
            specs[name] = spec
    if issues:
        raise ConfigError(issues)
    return specs


def feature_spec(output: OutputConfig, config_dir: Path | None, where: str = "output.json_schema") -> OutputSpec | None:
    """The spec a feature's `output` section asks for; None when it names no schema."""
    if output.json_schema is None:
        return None
    schema = load_schema(output.json_schema, config_dir, where)
    return OutputSpec(schema, output.repair, output.reask, "feature")


def output_spec(feature: OutputSpec | None, body: dict[str, Any]) -> OutputSpec | None:
    """The request's `response_format` (json_schema or json_object) wins over the feature's spec.

    Raises BadRequest when the request's schema is not a valid JSON Schema.
    """
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return feature
    kind = response_format.get("type")
    if kind not in ("json_schema", "json_object"):
        return feature
    reask = feature.reask if feature is not None else 1
    if kind == "json_object":
        return OutputSpec(_JSON_OBJECT, True, reask, "request")
    declared = response_format.get("json_schema")
    schema = declared.get("schema", {}) if isinstance(declared, dict) else {}
    if not isinstance(schema, dict):
        raise BadRequest("response_format.json_schema.schema must be an object", param="response_format")
    try:
        _compiled(_key(schema))
    except schema_errors.SchemaError as exc:
        message = f"response_format.json_schema.schema is not a valid JSON Schema: {_describe(exc)}"
        raise BadRequest(message, param="response_format") from exc
    return OutputSpec(schema, True, reask, "request")


def schema_hint(body: dict[str, Any], spec: OutputSpec | None) -> dict[str, Any] | None:
    """`body` asking for the feature's schema as its `response_format`, for a model that follows one
    (`Provider.follows_schema`: the local model's grammar); None when the request names its own
    format or the feature has no schema. Other models get the body as the client sent it."""
    if spec is None or spec.source != "feature" or "response_format" in body:
        return None
    asked = {"type": "json_schema", "json_schema": {"name": "output", "schema": spec.schema}}
    return {**body, "response_format": asked}


def check(spec: OutputSpec, answer: dict[str, Any]) -> Verdict:
    """Parse and validate the first choice's content; on failure repair it (if allowed) and re-validate.

    A message with tool calls and no content is accepted: tool calls are not validated here.
    """
    message = _message(answer)
    content = message.get("content")
    if not content and message.get("tool_calls"):
        return Verdict(True, "")
    if not isinstance(content, str) or not content.strip():
        return Verdict(False, content if isinstance(content, str) else "", error="the answer has no content")
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        parse_error = f"not valid JSON: {exc}"
    else:
        error = _violation(spec.schema, value)
        return Verdict(error is None, content, error=error)
    if not spec.repair:
        return Verdict(False, content, error=parse_error)
    repaired = _repair(content)
    if repaired is None:
        return Verdict(False, content, error=parse_error)
    error = _violation(spec.schema, repaired)
    if error is not None:
        return Verdict(False, content, error=f"{error} (after repairing invalid JSON)")
    return Verdict(True, orjson.dumps(repaired).decode(), repaired=True)


def with_content(answer: dict[str, Any], content: str) -> dict[str, Any]:
    """A copy of `answer` whose first choice says `content`; the original is left as it was."""
    first = dict(answer["choices"][0])
    first["message"] = {**first["message"], "content": content}
    return {**answer, "choices": [first, *answer["choices"][1:]]}


def reask_body(body: dict[str, Any], spec: OutputSpec, bad_content: str, error: str) -> dict[str, Any]:
    """A copy of the request that shows the model its bad answer and exactly what was wrong with it."""
    schema = orjson.dumps(spec.schema).decode()
    correction = (
        f"That answer was rejected: {error}\n"
        f"Reply again with only a JSON value that matches this JSON Schema, "
        f"with no prose and no code fences:\n{schema}"
    )
    asked = copy.copy(body)
    asked["messages"] = [
        *body.get("messages", []),
        {"role": "assistant", "content": bad_content},
        {"role": "user", "content": correction},
    ]
    return asked


def _message(answer: dict[str, Any]) -> dict[str, Any]:
    choices = answer.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict):
            return message
    return {}


def _violation(schema: dict[str, Any], value: Any) -> str | None:
    """The most relevant way `value` breaks `schema`, as `$.path: reason`; None when it conforms."""
    best = schema_errors.best_match(_compiled(_key(schema)).iter_errors(value))
    return None if best is None else _describe(best)


def _describe(error: schema_errors.ValidationError | schema_errors.SchemaError) -> str:
    text = f"{error.json_path}: {error.message}"
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"


def _repair(content: str) -> Any:
    """The value json-repair recovers from `content`, or None when nothing JSON-like is in it."""
    try:
        value = repair_json(content, return_objects=True)
    except (ValueError, RecursionError):
        return None
    # json-repair answers "" when it finds no JSON at all (prose, a refusal).
    return None if value == "" and content.strip() not in ('""', "''") else value


def _key(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)


@lru_cache(maxsize=256)
def _compiled(key: bytes) -> Validator:
    """A checked, compiled validator per distinct schema (keyed by its canonical JSON)."""
    schema = orjson.loads(key)
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _read_schema_file(value: str, config_dir: Path | None, where: str) -> dict[str, Any]:
    if config_dir is None:
        raise ConfigError([ConfigIssue(where, f"{value!r}: a schema file needs a config file to be relative to")])
    path = config_dir / value
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(where, f"cannot read schema file {path}: {exc.strerror}")]) from exc
    try:
        loaded = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([ConfigIssue(where, f"schema file {path} does not parse: {exc}")]) from exc
    if not isinstance(loaded, dict):
        raise ConfigError([ConfigIssue(where, f"schema file {path} must hold a JSON Schema object")])
    return loaded
