"""Import a promptfoo config (`promptfooconfig.yaml`) as a modelplane suite.

Carried over: `description`, `prompts` (strings, chat message lists, `file://` text or JSON
files), `providers` mapped to configured models with `--map PROVIDER=MODEL` (their
`temperature`, `max_tokens`, `top_p`, `seed` become the target's params), `tests` (inline),
`defaultTest` (`vars`, `assert`, `threshold`, and `options.provider` as the judge), and the
assertion types modelplane knows, under promptfoo's names and its `not-` prefix. Everything
else is listed in `notes`, one plain line each: nothing is dropped silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from modelplane.errors import UsageError
from modelplane.evals.assertions import resolve_type
from modelplane.evals.suite import SafeLoader

_PARAMS = ("temperature", "max_tokens", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty")
_CEILINGS = ("cost", "latency")  # promptfoo puts their ceiling in `threshold`
_APPROXIMATE = {"model-graded-closedqa": "llm-rubric"}
_JUDGED = ("llm-rubric", "factuality", "pairwise")  # the assertions that ask the suite's judge (assertions.py)
_NUNJUCKS = re.compile(r"\{%|\{\{[^}]*\|")


@dataclass
class Imported:
    yaml: str
    tests: int
    notes: list[str] = field(default_factory=list)


def parse_mapping(items: list[str]) -> dict[str, str]:
    mapping = {}
    for item in items:
        provider, sep, model = item.rpartition("=")
        if not sep or not provider or not model:
            raise UsageError(f"--map {item!r}: expected PROVIDER=MODEL", "e.g. --map openai:gpt-4o-mini=small")
        mapping[provider] = model
    return mapping


def import_config(path: Path, mapping: dict[str, str], out_dir: Path | None = None) -> Imported:
    """Convert the promptfoo config at `path`; `out_dir` is where file references must resolve from."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=SafeLoader)  # safe: libyaml or PyYAML SafeLoader
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", "pass a promptfooconfig.yaml") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML", "fix the file and import again") from exc
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: not a promptfoo config (expected a mapping)", "pass a promptfooconfig.yaml")
    importer = _Importer(path.parent, (out_dir or Path.cwd()).resolve(), mapping)
    suite = importer.suite(raw)
    text = yaml.safe_dump(suite, sort_keys=False, allow_unicode=True, width=120)
    header = f"# Imported from {path} by `modelplane eval import`.\n"
    return Imported(header + text, len(suite.get("tests", [])), importer.notes)


class _Importer:
    def __init__(self, base: Path, out_dir: Path, mapping: dict[str, str]) -> None:
        self.base = base
        self.out_dir = out_dir
        self.mapping = mapping
        self.notes: list[str] = []
        self.judged: set[str] = set()  # assertion types found that need a judge

    def note(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    def suite(self, raw: dict[str, Any]) -> dict[str, Any]:
        suite: dict[str, Any] = {}
        if raw.get("description"):
            suite["description"] = str(raw["description"])
        suite["target"] = self.target(raw.get("providers", raw.get("targets")))
        default = raw.get("defaultTest") or {}
        judge = self.judge(default)
        if judge is not None:
            suite["judge"] = {"model": judge}
        prompts = self.prompts(raw.get("prompts"))
        if prompts:
            suite["prompts"] = prompts
        if isinstance(default, dict):
            converted = self.test(default, "defaultTest", is_default=True)
            if converted:
                suite["defaultTest"] = converted
        tests = raw.get("tests") or []
        if isinstance(tests, str) or (isinstance(tests, list) and any(isinstance(t, str) for t in tests)):
            self.note("tests from files (file://…, CSV, globs) are not imported: inline them in the config")
            tests = [t for t in tests if isinstance(t, dict)] if isinstance(tests, list) else []
        suite["tests"] = [self.test(t, f"tests[{i}]") for i, t in enumerate(tests) if isinstance(t, dict)]
        if self.judged and "judge" not in suite:
            self.note(
                f"{', '.join(sorted(self.judged))} assertions need a judge (promptfoo's default grader is not "
                "imported): add `judge: {model: NAME}` to the suite, or set defaultTest.options.provider and --map it"
            )
        for key in raw:
            if key not in ("description", "providers", "targets", "prompts", "tests", "defaultTest"):
                self.note(f"top-level `{key}` has no modelplane equivalent")
        return suite

    def target(self, providers: Any) -> dict[str, Any]:
        items = providers if isinstance(providers, list) else [] if providers is None else [providers]
        entries = [(p, {}) if isinstance(p, str) else (str(p.get("id", "")), p.get("config") or {}) for p in items]
        entries = [(pid, config) for pid, config in entries if pid]
        if len(entries) > 1:
            rest = ", ".join(pid for pid, _ in entries[1:])
            self.note(f"a suite has one target: kept provider '{entries[0][0]}', not {rest} (import once per model)")
        if not entries:
            self.note("no providers: the target is the feature 'chat' (edit `target`)")
            return {"feature": "chat"}
        pid, config = entries[0]
        model = self.mapping.get(pid)
        if model is None:
            self.note(f"provider '{pid}' is not mapped: pass --map {pid}=MODEL (target left as model '{pid}')")
            model = pid
        target: dict[str, Any] = {"model": model}
        params = {k: v for k, v in config.items() if k in _PARAMS} if isinstance(config, dict) else {}
        if params:
            target["params"] = params
        dropped = sorted(set(config) - set(_PARAMS)) if isinstance(config, dict) else []
        if dropped:
            self.note(f"provider '{pid}' config {dropped} not carried over (set them on the model in modelplane.yaml)")
        return target

    def judge(self, default: Any) -> str | None:
        options = default.get("options") if isinstance(default, dict) else None
        provider = options.get("provider") if isinstance(options, dict) else None
        if provider is None:
            return None
        pid = (
            provider if isinstance(provider, str) else str(provider.get("id", "")) if isinstance(provider, dict) else ""
        )
        if pid in self.mapping:
            return self.mapping[pid]
        self.note(f"grading provider '{pid}' is not mapped: pass --map {pid}=MODEL (judge left as '{pid}')")
        return pid or None

    def prompts(self, raw: Any) -> list[Any]:
        items = raw if isinstance(raw, list) else [] if raw is None else [raw]
        prompts: list[Any] = []
        for item in items:
            if isinstance(item, dict):
                item = item.get("raw", item.get("id"))
            if not isinstance(item, str):
                self.note(f"prompt {item!r} is not a string or file reference: skipped")
                continue
            if item.startswith("file://"):
                loaded = self.prompt_file(item)
                if loaded is None:
                    continue
                item = loaded
            if isinstance(item, str) and _NUNJUCKS.search(item):
                self.note(f"prompt {item[:40]!r}… uses Nunjucks beyond {{{{var}}}}: only plain variables are filled")
            prompts.append(item)
        return prompts

    def prompt_file(self, ref: str) -> Any:
        path = self.base / ref.removeprefix("file://")
        if ":" in path.name or any(ch in str(path) for ch in "*?"):
            self.note(f"prompt {ref}: functions and globs are not supported: skipped")
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.note(f"prompt {ref}: cannot read it ({exc.strerror}): skipped")
            return None
        if path.suffix in (".json", ".yaml", ".yml"):
            try:
                value = orjson.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (orjson.JSONDecodeError, yaml.YAMLError):
                self.note(f"prompt {ref}: not a readable chat message list: skipped")
                return None
            if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
                return value
            self.note(f"prompt {ref}: not a list of chat messages: skipped")
            return None
        if path.suffix not in ("", ".txt", ".md", ".j2", ".njk"):
            self.note(f"prompt {ref}: {path.suffix} prompt files are not supported: skipped")
            return None
        return text.strip("\n")

    def test(self, raw: dict[str, Any], where: str, is_default: bool = False) -> dict[str, Any]:
        test: dict[str, Any] = {}
        if raw.get("description"):
            test["description"] = str(raw["description"])
        if isinstance(raw.get("vars"), dict):
            test["vars"] = {k: self.var(v, f"{where}.vars.{k}") for k, v in raw["vars"].items()}
        elif raw.get("vars") is not None:
            self.note(f"{where}.vars: only a mapping of vars is imported")
        asserts = [self.assertion(a, f"{where}.assert[{i}]") for i, a in enumerate(raw.get("assert") or [])]
        if any(a is not None for a in asserts):
            test["assert"] = [a for a in asserts if a is not None]
        if raw.get("threshold") is not None:
            test["threshold"] = raw["threshold"]
        options = raw.get("options")
        if isinstance(options, dict) and any(k != "provider" or not is_default for k in options):
            self.note(f"{where}.options {sorted(options)} not carried over (only defaultTest.options.provider)")
        for key in raw:
            if key not in ("description", "vars", "assert", "threshold", "options"):
                self.note(f"{where}.{key} has no modelplane equivalent")
        return test

    def var(self, value: Any, where: str) -> Any:
        if isinstance(value, str) and value.startswith("file://"):
            path = self.base / value.removeprefix("file://")
            try:
                return path.read_text(encoding="utf-8")
            except OSError as exc:
                self.note(f"{where}: cannot read {value} ({exc.strerror}): kept the reference as text")
        return value

    def assertion(self, raw: Any, where: str) -> dict[str, Any] | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            self.note(f"{where}: not an assertion mapping: skipped")
            return None
        kind = raw["type"]
        if kind in _APPROXIMATE:
            self.note(f"{where}: {kind} imported as {_APPROXIMATE[kind]} (the closest modelplane type)")
            kind = _APPROXIMATE[kind]
        name, _, problem = resolve_type(kind)
        if problem is not None:
            self.note(f"{where}: assertion type '{kind}' is not supported: skipped")
            return None
        if name in _JUDGED:
            self.judged.add(name)
        out: dict[str, Any] = {"type": kind}
        value = raw.get("value")
        if name in _CEILINGS and value is None and raw.get("threshold") is not None:
            value, threshold = raw["threshold"], None  # promptfoo's ceiling is modelplane's value
        else:
            threshold = raw.get("threshold")
        if name == "python" and isinstance(value, str) and value.startswith("file://"):
            value = self.relocated(value)
        if value is not None:
            out["value"] = value
        if threshold is not None:
            out["threshold"] = threshold
        if raw.get("weight") is not None:
            out["weight"] = raw["weight"]
        for key in raw:
            if key not in ("type", "value", "threshold", "weight", "metric"):
                self.note(f"{where}.{key} not carried over")
        return out

    def relocated(self, ref: str) -> str:
        """A file reference that resolves from the output suite's folder as it did from the config's."""
        target, sep, function = ref.removeprefix("file://").partition(":")
        absolute = (self.base / target).resolve()
        relative = os.path.relpath(absolute, self.out_dir)
        return f"file://{relative}{sep}{function}"
