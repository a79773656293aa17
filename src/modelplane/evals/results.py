"""What an eval run produces: one `CaseResult` per case and repeat, inside one `RunResult`.

These are the contract between the runner (which fills them), the run store (which saves
and loads them as JSON), and the gate, JUnit and Markdown reports (which read them). A run
saved by one version must load in the next: add fields with defaults, never rename.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

FORMAT = 1  # bump only with a loader for the old format


@dataclass(slots=True)
class AssertionResult:
    """One assertion applied to one output."""

    type: str  # "contains", "llm-rubric", …
    passed: bool
    score: float  # in [0, 1]
    weight: float = 1.0
    reason: str = ""  # why it failed (or the judge's reason); one line
    threshold: float | None = None


@dataclass(slots=True)
class CaseResult:
    """One case, one repeat: the output and its verdict."""

    case_id: str  # stable across runs: the gate pairs cases of two runs by it
    repeat: int  # 0-based
    passed: bool  # every assertion passed (weighted score ≥ the case's threshold, if it has one)
    score: float  # weighted mean of the assertion scores, in [0, 1]
    output: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    assertions: list[AssertionResult] = field(default_factory=list)
    error: str | None = None  # the target failed (the case fails; the run goes on)
    cached: bool = False  # answered from the eval response cache
    model: str | None = None  # the model that answered
    serving_id: str | None = None  # the gateway serving, when the target is a feature
    cost_usd: float | None = None  # None = unknown, never 0 for unknown
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0


@dataclass(slots=True)
class RunResult:
    """A whole run of a suite."""

    id: str
    suite: str  # the suite's name (or file stem)
    target: str  # "feature:support-reply" or "model:gpt-4o-mini"
    started_at: float
    finished_at: float
    config_version: str = ""
    repeats: int = 1
    cases: list[CaseResult] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # git commit, suite path, concurrency, …
    format: int = FORMAT

    def to_json(self) -> bytes:
        # orjson encodes dataclasses itself, the same bytes as via `dataclasses.asdict`, ten times faster.
        return orjson.dumps(self, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes | str) -> RunResult:
        raw = orjson.loads(data)
        if raw.get("format") != FORMAT:
            raise ValueError(f"unsupported eval run format {raw.get('format')!r} (this version reads {FORMAT})")
        cases = [
            CaseResult(**{**case, "assertions": [AssertionResult(**a) for a in case.get("assertions", [])]})
            for case in raw.pop("cases", [])
        ]
        return cls(**raw, cases=cases)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self.to_json())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> RunResult:
        return cls.from_json(path.read_bytes())
