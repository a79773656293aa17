"""Loading config: YAML, `${ENV}` interpolation, typed validation, versions, the embedded default."""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modelplane.config.checks import cross_check, route_files
from modelplane.config.schema import Config
from modelplane.errors import ConfigError, ConfigIssue

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Loader(yaml.SafeLoader):
    """Safe YAML that leaves dates as text: the schema parses them, so `effective: 2025-13-01`
    is an error with its path rather than a ValueError from inside PyYAML."""


def _date_as_text(loader: _Loader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)  # only scalars resolve to the timestamp tag
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _date_as_text)

EMBEDDED_DEFAULT_YAML = """\
# The embedded default: the bundled local model, a SQLite ledger under $MODELPLANE_HOME,
# no API keys, so the gateway only listens on 127.0.0.1.
providers:
  local: {kind: llamacpp, model: "bundled:gemma-3-270m"}
models:
  local-small: {provider: local, name: gemma-3-270m, price: {input: 0, output: 0}}
features:
  chat: {route: {strategy: single, models: [local-small]}, description: "General chat on the local model"}
"""


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated config with where it came from and the version every ledger record carries."""

    config: Config
    version: str
    source: str
    embedded: bool
    home: Path

    def ledger_url(self) -> str:
        return self.config.ledger.url or f"sqlite:///{self.home / 'ledger.db'}"


def load_config(path: Path | None, *, home: Path, env: Mapping[str, str]) -> LoadedConfig:
    """Load `path`, or the embedded default when `path` is None. Raises ConfigError with every issue."""
    if path is None:
        text, source = EMBEDDED_DEFAULT_YAML, "embedded default"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([ConfigIssue("", f"cannot read {path}: {exc.strerror}")], str(path)) from exc
        source = str(path)
    config = parse_config(text, env=env, source=source)
    if path is not None and (missing := route_files(config, path.parent)):
        raise ConfigError(missing, source)
    return LoadedConfig(config, config_version(text, path), source, path is None, home)


def parse_config(text: str, *, env: Mapping[str, str], source: str = "config") -> Config:
    """Parse YAML text into a validated `Config`, collecting every error with its path."""
    try:
        raw = yaml.load(text, Loader=_Loader)  # safe: _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([ConfigIssue(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")], source) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([ConfigIssue("", "the top level must be a mapping of sections")], source)
    issues: list[ConfigIssue] = []
    data = _interpolate(raw, "", env, issues)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        issues.extend(ConfigIssue(_dotted(err["loc"]), _message(err)) for err in exc.errors())
        raise ConfigError(issues, source) from exc
    issues.extend(cross_check(config))
    if issues:
        raise ConfigError(issues, source)
    return config


def config_version(text: str, path: Path | None) -> str:
    """Content hash of the file, plus the git commit of its folder when there is one."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    commit = _git_commit(path.parent) if path is not None else None
    return f"{digest}@{commit}" if commit else digest


def _git_commit(folder: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _interpolate(value: Any, path: str, env: Mapping[str, str], issues: list[ConfigIssue]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, _join(path, str(k)), env, issues) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, issues) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        issues.append(
            ConfigIssue(path, f"environment variable {name} is not set (use ${{{name}:-default}} for a default)")
        )
        return ""

    return _ENV.sub(substitute, value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out = f"{out}[{part}]" if isinstance(part, int) else _join(out, part)
    return out


def _message(err: Mapping[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        return "unknown field"
    message = str(err.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")
