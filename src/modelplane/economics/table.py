"""The shipped default price table (`prices.yaml`, list prices with effective dates) and how a
model's upstream name finds its entry.

Matching, in order:

1. only the part after the last `/` counts (`openai/gpt-4o`, `models/gemini-2.5-pro`), lower-cased;
2. the name itself, if the table has it;
3. otherwise the name with snapshot suffixes taken off its end, one at a time, until the table
   has it: a date (`-2024-08-06`, `-20250514`), a 3 or 4 digit version (`-2411`, `-001`, `-0613`),
   `-latest`, `-preview[-MM-DD]`, `-exp[-MM-DD|-MMDD]`, a Bedrock version (`-v1:0`).

So `gpt-4o-2024-08-06` is priced as `gpt-4o`, `claude-sonnet-4-20250514` as `claude-sonnet-4`,
`mistral-large-2411` as `mistral-large`; but `gpt-4o-mini` is never priced as `gpt-4o`, since
`-mini` is not a snapshot suffix.
"""

from __future__ import annotations

import functools
import re
from datetime import date
from importlib import resources

import yaml
from pydantic import Field, model_validator

from modelplane.config.schema import Price, PriceList, Strict

_SNAPSHOT = re.compile(
    r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{3,4}|latest|preview(?:-\d{2}-\d{2})?|exp(?:-\d{2}-\d{2}|-\d{4})?|v\d+(?::\d+)?)$"
)


class TableEntry(Strict):
    """One model's list prices, oldest first, each with the date it took effect."""

    vendor: str
    prices: PriceList

    @model_validator(mode="after")
    def _dated_in_order(self) -> TableEntry:
        dates = [p.effective for p in self.prices]
        if any(d is None for d in dates):
            raise ValueError("every price in the table needs `effective`")
        if dates != sorted(d for d in dates if d is not None):
            raise ValueError("prices must be listed oldest first")
        return self


class PriceTable(Strict):
    """List prices by upstream model name, as of one date."""

    as_of: date
    models: dict[str, TableEntry] = Field(default_factory=dict)

    def match(self, name: str) -> str | None:
        """The table's name for an upstream model name (see the module docstring), or None."""
        candidate = name.rsplit("/", 1)[-1].lower()
        while candidate not in self.models:
            shorter = _SNAPSHOT.sub("", candidate)
            if shorter == candidate:
                return None
            candidate = shorter
        return candidate

    def prices(self, name: str) -> list[Price] | None:
        """The price history of an upstream model name, or None when the table does not list it."""
        key = self.match(name)
        return None if key is None else self.models[key].prices


@functools.cache
def default_table() -> PriceTable:
    """The table shipped inside the package; read once (it never changes while the process runs)."""
    text = resources.files("modelplane.economics").joinpath("prices.yaml").read_text(encoding="utf-8")
    return PriceTable.model_validate(yaml.safe_load(text))
