"""`modelplane serve` refuses bad setups with a one-line reason and exit 2, before loading anything."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("modelplane")), "serve", *args]
    env = {"MODELPLANE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_taken_port_is_a_usage_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = serve(tmp_path, "--port", str(port))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_keys_means_loopback_only(tmp_path: Path) -> None:
    result = serve(tmp_path, "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 with no API keys configured" in result.stderr


def test_a_bad_config_lists_every_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("features:\n  f: {route: {models: [nope]}}\n  g: {route: {models: [nada]}}\n")
    result = serve(tmp_path, "--config", str(config))
    assert result.returncode == 2
    assert "features.f.route.models[0]: unknown model 'nope'" in result.stderr
    assert "features.g.route.models[0]: unknown model 'nada'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_log_level_is_refused_before_anything_loads(tmp_path: Path) -> None:
    result = serve(tmp_path, "--log-level", "verbose", "--port", "0")
    assert result.returncode == 2
    assert "Invalid value for '--log-level'" in result.stderr and "'verbose' is not one of" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "home").exists()


def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    result = serve(tmp_path, "--port", "99999")
    assert result.returncode == 2
    assert "Invalid value for '--port'" in result.stderr and "Traceback" not in result.stderr
