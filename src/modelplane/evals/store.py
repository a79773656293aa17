"""The run store: one JSON file per run under `$MODELPLANE_HOME/evals/runs/` (or `--runs-dir`).

Files, not the ledger: a run is a document a CI job uploads as an artifact, a baseline is
a file checked out beside the suite, and `compare` needs no database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from modelplane.errors import UsageError
from modelplane.evals.results import RunResult

_RUN_ID = re.compile(r"^[\w.-]{1,128}$")


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A line of `modelplane eval list`."""

    id: str
    suite: str
    target: str
    started_at: float
    cases: int
    passed: int
    config_version: str


class RunStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, run_id: str) -> Path:
        if not _RUN_ID.match(run_id):
            raise UsageError(f"invalid run id {run_id!r}", "use letters, digits, '-', '_' and '.' only")
        return self.root / f"{run_id}.json"

    def save(self, run: RunResult) -> Path:
        path = self.path(run.id)
        run.save(path)
        return path

    def load(self, ref: str) -> RunResult:
        """A run by id in this store, or by the path of a run file."""
        candidate = Path(ref)
        if ref.endswith(".json") and candidate.is_file():
            path = candidate
        else:
            path = self.path(ref) if _RUN_ID.match(ref) else candidate
        if not path.is_file():
            raise UsageError(f"no eval run '{ref}' in {self.root}", "`modelplane eval list` shows the stored runs")
        try:
            return RunResult.load(path)
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(f"{path} is not an eval run: {exc}", "pass a run id or a run JSON file") from exc

    def list(self) -> list[RunInfo]:
        """Every readable run, newest first."""
        infos = []
        for path in self.root.glob("*.json") if self.root.is_dir() else []:
            try:
                run = RunResult.load(path)
            except (OSError, ValueError, TypeError, KeyError):
                continue  # a foreign or half-written file is not a run
            passed = sum(1 for case in run.cases if case.passed)
            infos.append(
                RunInfo(run.id, run.suite, run.target, run.started_at, len(run.cases), passed, run.config_version)
            )
        return sorted(infos, key=lambda info: info.started_at, reverse=True)
