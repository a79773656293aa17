"""Per-prompt outcomes to train and evaluate a router on: did the weak model, did the strong model get it right?

Two sources, one shape (`Outcome`):

- **CSV files** in the format of RouteLLM's per-prompt responses (shared/data/routing/mmlu):
  a `prompt` column and one True/False column per model, named by the model. Each file is
  a *group* (its stem, e.g. `mmlu_anatomy`), so an evaluation can hold out whole subjects.
- **Judged servings** from the ledger. The contract with shadow judging (the serving side
  that answers a sample of weak-routed servings with the strong model too and judges both)
  is a row per judged serving with three fields, passed to `outcomes_from_rows`:

      prompt     str   the user's prompt as the router saw it (the text it embeds)
      weak_ok    bool  the judge accepted the weak model's answer
      strong_ok  bool  the judge accepted the strong model's answer (True when the judge only
                       grades the weak answer against the strong one as the reference)

  plus an optional `group` (the feature name). Rows whose prompt is empty are skipped.
  Mind the bias: only servings the router sent to the weak model are shadow-judged, so the
  hardest prompts are under-represented until some are judged the other way too.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from modelplane.errors import UsageError

__all__ = ["Outcome", "Outcomes", "outcomes_from_rows", "parse_bool", "read_outcomes_csv"]

PROMPT_COLUMN = "prompt"
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """One prompt and whether each model answered it well."""

    prompt: str
    weak_ok: bool
    strong_ok: bool
    group: str = ""


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Outcomes as columns, the shape training and evaluation use."""

    prompts: list[str]
    weak_ok: npt.NDArray[np.bool_]
    strong_ok: npt.NDArray[np.bool_]
    groups: list[str]

    @classmethod
    def of(cls, outcomes: Sequence[Outcome]) -> Outcomes:
        return cls(
            [o.prompt for o in outcomes],
            np.array([o.weak_ok for o in outcomes], dtype=bool),
            np.array([o.strong_ok for o in outcomes], dtype=bool),
            [o.group for o in outcomes],
        )

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, mask: npt.NDArray[np.bool_]) -> Outcomes:
        """The rows where `mask` is true."""
        index = np.flatnonzero(mask)
        return Outcomes(
            [self.prompts[i] for i in index],
            self.weak_ok[index],
            self.strong_ok[index],
            [self.groups[i] for i in index],
        )


def parse_bool(value: str | bool | int) -> bool | None:
    """True/False as CSV files and databases spell them; None when it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return bool(value) if value in (0, 1) else None
    text = value.strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def read_outcomes_csv(
    paths: Iterable[Path], weak: str, strong: str, *, prompt_column: str = PROMPT_COLUMN
) -> list[Outcome]:
    """Read outcome CSVs; UsageError with the file (and line) on a missing column, a bad value or an unreadable file."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # some prompts (whole legal cases) exceed csv's 128 KB default
    out: list[Outcome] = []
    for path in paths:
        out.extend(_read_one(path, weak, strong, prompt_column))
    if not out:
        raise UsageError("no prompts in the data files", "pass CSV files with a header and at least one row")
    return out


def _read_one(path: Path, weak: str, strong: str, prompt_column: str) -> list[Outcome]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [name for name in (prompt_column, weak, strong) if name not in columns]
            if missing:
                have = ", ".join(columns) if columns else "none"
                raise UsageError(
                    f"{path}: no column {missing[0]!r} (columns: {have})",
                    "name the models' columns with --weak and --strong",
                )
            return [_outcome(path, reader.line_num, row, weak, strong, prompt_column) for row in reader]
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", "pass existing, readable CSV files") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: not a UTF-8 CSV file ({exc})", "pass CSV files with a header row") from exc


def _outcome(path: Path, line: int, row: Mapping[str, str | None], weak: str, strong: str, prompt: str) -> Outcome:
    values = []
    for column in (weak, strong):
        value = parse_bool(row.get(column) or "")
        if value is None:
            raise UsageError(f"{path}:{line}: column {column!r} is {row.get(column)!r}, not True/False")
        values.append(value)
    return Outcome(row.get(prompt) or "", values[0], values[1], path.stem)


def outcomes_from_rows(rows: Iterable[Mapping[str, object]]) -> list[Outcome]:
    """Outcomes from judged servings (the contract in the module docstring); UsageError on a malformed row."""
    out: list[Outcome] = []
    for number, row in enumerate(rows, 1):
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            continue
        flags = [
            parse_bool(v) if isinstance(v, str | bool | int) else None
            for v in (row.get("weak_ok"), row.get("strong_ok"))
        ]
        if flags[0] is None or flags[1] is None:
            raise UsageError(f"judged serving {number}: weak_ok and strong_ok must be booleans")
        group = row.get("group")
        out.append(Outcome(prompt, flags[0], flags[1], group if isinstance(group, str) else ""))
    return out
