"""The real services tests use: where they are, and what a test does when one is down."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REDIS_URL = "redis://127.0.0.1:6379/0"


def unavailable(reason: str) -> NoReturn:
    """A service a test needs is down: a failure under CI=true (CI has it), else a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)
