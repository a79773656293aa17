"""App factory for multi-worker `modelplane serve`: each worker reads the config itself."""

from __future__ import annotations

import os
from pathlib import Path

from modelplane.config.load import load_config
from modelplane.server.app import create_app
from modelplane.server.hotpath import HotPath


def app_from_env() -> HotPath:
    path = os.environ.get("MODELPLANE_CONFIG") or None
    home = Path(os.environ.get("MODELPLANE_HOME") or ".modelplane")
    env = dict(os.environ)
    return create_app(load_config(Path(path) if path else None, home=home, env=env), env=env)
