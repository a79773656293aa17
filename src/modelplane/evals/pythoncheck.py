"""Custom Python assertions: a function in a module or a file, or an expression of `output`.

    {type: python, value: "mychecks:is_polite"}           # an importable module's function
    {type: python, value: "checks.py:is_polite"}          # a file beside the suite (file:// works too)
    {type: python, value: "checks.py"}                    # its `get_assert`, as in promptfoo
    {type: python, value: "len(output) < 200"}            # an expression of `output` and `context`

The function is called as `fn(output, context)` and returns a bool, a score in [0, 1], or
`{"pass": …, "score": …, "reason": …}`; it may be async. Suites are code: only run suites you trust.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

_REFERENCE = re.compile(r"^(?:file://)?(?P<target>[\w./\\-]+?)(?::(?P<function>[A-Za-z_]\w*))?$")


@dataclass(frozen=True, slots=True)
class LoadedCheck:
    ref: str  # resolved: loading `ref` again (with no base) gives the same function
    function: Callable[[str, dict[str, Any]], Any]


def load_check(value: str, base: Path | None) -> LoadedCheck:
    """Resolve a `python` assertion's value; raises ImportError/OSError/SyntaxError/AttributeError."""
    text = value.strip()
    match = _REFERENCE.match(text)
    if match is not None and (match.group("target").endswith(".py") or match.group("function")):
        target, function = match.group("target"), match.group("function")
        if target.endswith(".py"):
            path = Path(target)
            path = (path if path.is_absolute() or base is None else base / path).resolve()
            return _from_file(str(path), function or "get_assert")
        if function is not None:
            return _from_module(target, function)
    return _expression(text)


@lru_cache(maxsize=256)
def _from_file(path: str, function: str) -> LoadedCheck:
    if not Path(path).is_file():
        raise OSError(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"modelplane_check_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return LoadedCheck(f"{path}:{function}", _callable(module, function, path))


@lru_cache(maxsize=256)
def _from_module(module_name: str, function: str) -> LoadedCheck:
    module = importlib.import_module(module_name)
    return LoadedCheck(f"{module_name}:{function}", _callable(module, function, module_name))


def _callable(module: Any, function: str, where: str) -> Callable[[str, dict[str, Any]], Any]:
    found = getattr(module, function, None)
    if not callable(found):
        raise AttributeError(f"{where} has no function {function!r}")
    return found  # type: ignore[no-any-return]


@lru_cache(maxsize=1024)
def _expression(source: str) -> LoadedCheck:
    """A one-line expression, or (several lines) a function body that returns the result."""
    if "\n" not in source:
        code = compile(source, "<python assertion>", "eval")

        def evaluate(output: str, context: dict[str, Any]) -> Any:
            return eval(code, {"__builtins__": __builtins__}, {"output": output, "context": context})

        return LoadedCheck(source, evaluate)
    body = "\n".join("    " + line for line in source.splitlines())
    namespace: dict[str, Any] = {}
    exec(compile(f"def check(output, context):\n{body}\n", "<python assertion>", "exec"), namespace)
    return LoadedCheck(source, namespace["check"])
