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
from pydantic_core import ErrorDetails

from modelplane.config.checks import cross_check, output_schemas, route_files
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


def _mapping_once(loader: _Loader, node: yaml.Node) -> dict[Any, Any]:
    """A mapping whose keys are all different: YAML would keep the last of two `small:` entries and
    drop the first without a word, which in a config is always a mistake."""
    assert isinstance(node, yaml.MappingNode)
    first: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # keys a `<<:` merge brings in may be overridden: that is what merges are for
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool):
            continue
        if key in first:
            line = first[key].start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {line})", key_node.start_mark
            )
        first[key] = key_node
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node, deep=True))


_Loader.add_constructor("tag:yaml.org,2002:map", _mapping_once)

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
    folder: Path | None = None  # the config file's folder: relative paths in it are read from there

    def ledger_url(self) -> str:
        """The ledger's URL. A relative SQLite path is read from the config file's folder, like the
        schema and router files it names, so `serve` and `report` find one ledger from anywhere."""
        url = self.config.ledger.url
        if not url:
            return f"sqlite:///{self.home / 'ledger.db'}"
        scheme, marker, rest = url.partition(":///")
        path, query_mark, query = rest.partition("?")
        relative = path and path != ":memory:" and not path.startswith(("/", "~"))
        if marker and scheme in ("sqlite", "sqlite+aiosqlite") and relative and self.folder is not None:
            return f"{scheme}:///{(self.folder / path).resolve()}{query_mark}{query}"
        return url


def load_config(path: Path | None, *, home: Path, env: Mapping[str, str], secrets: bool = True) -> LoadedConfig:
    """Load `path`, or the embedded default when `path` is None. Raises ConfigError with every issue.

    `secrets=False` is for commands that never call a provider (they read the ledger or the cache):
    an unset `${ENV}` in `providers` is then left empty instead of being an error.
    """
    if path is None:
        text, source = EMBEDDED_DEFAULT_YAML, "embedded default"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([ConfigIssue("", f"cannot read {path}: {exc.strerror}")], str(path)) from exc
        source = str(path)
    folder = None if path is None else path.parent
    config = parse_config(text, env=env, source=source, config_dir=folder, secrets=secrets)
    return LoadedConfig(config, config_version(text, path), source, path is None, home, folder)


def parse_config(
    text: str,
    *,
    env: Mapping[str, str],
    source: str = "config",
    config_dir: Path | None = None,
    secrets: bool = True,
) -> Config:
    """Parse YAML text into a validated `Config`, collecting every error with its path.

    Files the config names (router files, output schemas) are checked relative to `config_dir`,
    when given. `secrets=False`: see `load_config`.
    """
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
    unchecked: list[ConfigIssue] = []  # unset secrets of providers, when they are not needed
    data = {
        key: _interpolate(value, str(key), env, unchecked if key == "providers" and not secrets else issues)
        for key, value in raw.items()
    }
    config, found = _validate(data, config_dir)
    issues.extend(found)
    if config is None or issues:
        raise ConfigError(issues, source)
    return config


def _validate(data: dict[str, Any], config_dir: Path | None) -> tuple[Config | None, list[ConfigIssue]]:
    """The config (None when it does not validate) and every issue: structural ones first, then
    those between sections and with files, found with the broken parts set aside."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        issues = [ConfigIssue(_dotted(err["loc"]), _message(err)) for err in exc.errors()]
        salvaged = _salvage(data, exc.errors())
        if salvaged is None:
            return None, issues
        partial, broken = salvaged
        later = [*cross_check(partial), *_files(partial, config_dir)]
        return None, [*issues, *(issue for issue in later if not any(_within(issue.path, b) for b in broken))]
    return config, [*cross_check(config), *_files(config, config_dir)]


def _files(config: Config, config_dir: Path | None) -> list[ConfigIssue]:
    return [] if config_dir is None else [*route_files(config, config_dir), *output_schemas(config, config_dir)]


# Sections of named (or listed) entries, and what stands in for a broken entry while the rest is
# cross-checked: it keeps the entry's name, so references to it resolve and are not reported as
# unknown. A broken feature is left out (nothing refers to a feature by name).
_NAMED = ("providers", "models", "tiers", "features", "tenants", "keys")
Part = tuple[int | str, ...]


def _stand_in(section: str, index: int | str, entry: Any) -> dict[str, Any] | None:
    if section == "keys":  # keeps its tenant, which `tenants` budgets refer to
        tenant = entry.get("tenant") if isinstance(entry, dict) else None
        digest = hashlib.sha256(f"stand-in {index}".encode()).hexdigest()
        return {"hash": f"sha256:{digest}", "tenant": str(tenant or "?")}
    return {"providers": {"kind": "openai"}, "models": {"provider": ""}, "tiers": {}, "tenants": {}}.get(section)


def _salvage(data: dict[str, Any], errors: list[ErrorDetails]) -> tuple[Config, list[str]] | None:
    """The config without its broken parts, and their paths; None when they cannot be set aside.

    Only the broken fields are left out at first (most have defaults), so an entry with one bad
    field is still cross-checked; an entry that cannot do without the field is then left out whole.
    """
    locs = [tuple(err["loc"]) for err in errors]
    if any(not loc or (loc[0] in _NAMED and len(loc) < 2) for loc in locs):
        return None  # a whole section of names is malformed: references to them cannot be checked
    parts = {_part(loc, whole=False) for loc in locs}
    for _ in range(3):
        parts = {p for p in parts if not any(q != p and p[: len(q)] == q for q in parts)}
        try:
            return Config.model_validate(_set_aside(data, parts)), [_dotted(part) for part in parts]
        except ValidationError as exc:  # a required field was left out: leave out its entry
            parts |= {_part(tuple(err["loc"]), whole=True) for err in exc.errors() if err["loc"]}
        except (LookupError, TypeError, ValueError):
            return None  # a shape that cannot be taken apart
    return None


def _part(loc: Part, whole: bool) -> Part:
    """The field of an entry (or of a settings section) that `loc` is in; `whole`: the entry (section)."""
    depth = 2 if loc[0] in _NAMED else 1
    return loc[: depth if whole else depth + 1]


def _set_aside(data: dict[str, Any], parts: set[Part]) -> dict[str, Any]:
    data = dict(data)
    for part in parts:
        section = str(part[0])
        if len(part) == 1:  # a settings section: every field has a default; an unknown section goes
            data.pop(section, None)
            if section in Config.model_fields:
                data[section] = {}
            continue
        container = data[section] = data[section].copy()
        if len(part) == 3:  # a field of a named entry
            container[part[1]] = {k: v for k, v in container[part[1]].items() if k != part[2]}
        elif section not in _NAMED:  # a field of a settings section
            del container[part[1]]
        elif (stand_in := _stand_in(section, part[1], container[part[1]])) is not None:
            container[part[1]] = stand_in
        else:
            del container[part[1]]
    return data


def _within(path: str, part: str) -> bool:
    return path == part or path.startswith((f"{part}.", f"{part}["))


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
