"""`modelplane serve` as a subprocess, for tests that talk to the real server over loopback."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GatewayProcess:
    """A `modelplane serve` subprocess on 127.0.0.1; stderr goes to a file so it can never block."""

    process: subprocess.Popen[bytes]
    port: int
    stderr_path: Path
    home: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"modelplane serve exited with {self.process.returncode}:\n{self.stderr}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"modelplane serve not ready within {timeout}s:\n{self.stderr}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; kill (and fail) if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            pytest.fail(f"modelplane serve did not exit within {timeout}s of SIGTERM:\n{self.stderr}")


