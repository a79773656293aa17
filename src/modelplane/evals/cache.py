"""The eval response cache: a rerun of an unchanged suite answers from here, fast and repeatable.

Keyed on what changes the answer: the target (its name and a hash of its config), the
request parameters, the messages, and the repeat (each repeat is its own sample). Stored
in SQLite under `$MODELPLANE_HOME/evals/cache.sqlite`. A run reads every key it will need
in one query up front and writes new answers in batches; failures are never stored.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

_BATCH = 256
_CHUNK = 500  # keys per SELECT … IN (…): under SQLite's variable limit


@dataclass(frozen=True, slots=True)
class Completion:
    """One answer of a target, as the cache stores it."""

    text: str
    model: str | None = None
    cost_usd: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    serving_id: str | None = None
    error: str | None = None
    cached: bool = False


def cache_key(target: str, fingerprint: str, body: dict[str, Any], repeat: int) -> str:
    raw = orjson.dumps([target, fingerprint, body, repeat], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).hexdigest()


class EvalCache:
    """Answers by key; `path` None keeps nothing (`--no-cache`)."""

    def __init__(self, path: Path | None) -> None:
        self._known: dict[str, Completion] = {}
        self._pending: list[tuple[Any, ...]] = []
        self._db: sqlite3.Connection | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT NOT NULL, model TEXT,"
                " cost_usd REAL, input_tokens INTEGER, output_tokens INTEGER, latency_ms REAL, created REAL)"
            )

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def preload(self, keys: list[str]) -> int:
        """Read these keys in as few queries as possible; returns how many were found."""
        if self._db is None:
            return 0
        wanted = [k for k in dict.fromkeys(keys) if k not in self._known]
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, text, model, cost_usd, input_tokens, output_tokens, latency_ms FROM answers WHERE key IN ({marks})"  # noqa: E501
            for key, *row in self._db.execute(query, chunk):
                self._known[key] = _completion(row)
        return sum(1 for k in keys if k in self._known)

    def get(self, key: str) -> Completion | None:
        found = self._known.get(key)
        if found is not None or self._db is None:
            return found
        row = self._db.execute(
            "SELECT text, model, cost_usd, input_tokens, output_tokens, latency_ms FROM answers WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        self._known[key] = found = _completion(row)
        return found

    def put(self, key: str, answer: Completion) -> None:
        if self._db is None or answer.error is not None:
            return
        self._known[key] = _completion(
            (answer.text, answer.model, answer.cost_usd, answer.input_tokens, answer.output_tokens, answer.latency_ms)
        )
        row = (answer.text, answer.model, answer.cost_usd, answer.input_tokens, answer.output_tokens)
        self._pending.append((key, *row, answer.latency_ms, time.time()))
        if len(self._pending) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self._db is None or not self._pending:
            return
        rows, self._pending = self._pending, []
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None


def _completion(row: Any) -> Completion:
    text, model, cost, tokens_in, tokens_out, latency = row
    return Completion(text, model, cost, tokens_in or 0, tokens_out or 0, latency or 0.0, cached=True)
