"""Saving studies to files and Redis: versioned JSON, never pickle.

A saved study is one JSON document::

    {"format": "workbench.optimize.study", "version": 1, "saved_s": ..., "study": {...}}

where ``study`` is :meth:`Optimizer.to_dict` (space, objectives, strategy name, seed, trials
with outcomes and pending ones, the suggestion counter and the GP's warm-start
hyperparameters as plain lists of floats). JSON floats round-trip exactly, so a loaded study
warm-starts from the very hyperparameters the original would use and, with the same seed,
proposes the same next point. Loading refuses unknown formats and newer versions with
:class:`~workbench.errors.StorageFormatError` instead of guessing.

Redis keys (through :class:`~workbench.redis_adapter.RedisAdapter`, so the settings' prefix
applies): ``optimize:study:<name>`` holds the document; studies are listed with SCAN.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from workbench.errors import NotFoundError, StorageFormatError

if TYPE_CHECKING:  # pragma: no cover
    from workbench.optimize.optimizer import Optimizer
    from workbench.redis_adapter import RedisAdapter

__all__ = [
    "FORMAT",
    "STUDY_NAME_PATTERN",
    "VERSION",
    "FileStudyStore",
    "RedisStudyStore",
    "dumps",
    "load_file",
    "loads",
    "save_file",
]

FORMAT = "workbench.optimize.study"
VERSION = 1


def dumps(opt: Optimizer) -> bytes:
    """The study as a versioned JSON document (UTF-8 bytes)."""
    doc = {"format": FORMAT, "version": VERSION, "saved_s": time.time(), "study": opt.to_dict()}
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def loads(data: bytes | str) -> Optimizer:
    """Rebuild a study from :func:`dumps` output.

    Raises:
        StorageFormatError: not JSON, another format, or a version this code does not know.
    """
    from workbench.optimize.optimizer import Optimizer

    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StorageFormatError(f"saved study is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StorageFormatError(f"not a saved study (format must be {FORMAT!r})")
    version = doc.get("version")
    if version != VERSION:
        raise StorageFormatError(
            f"saved study has version {version!r}; this workbench reads version {VERSION}",
            details={"version": version},
        )
    try:
        return Optimizer.from_dict(doc["study"])
    except Exception as exc:
        raise StorageFormatError(f"saved study is corrupt: {exc}") from exc


def save_file(opt: Optimizer, path: str | os.PathLike[str]) -> Path:
    """Write the study to ``path`` atomically (a temporary file, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(dumps(opt))
    os.replace(tmp, target)
    return target


def load_file(path: str | os.PathLike[str]) -> Optimizer:
    """Read a study written by :func:`save_file`."""
    target = Path(path)
    if not target.is_file():
        raise NotFoundError(f"no saved study at {str(target)!r}")
    return loads(target.read_bytes())


#: What a study name may be: 1-128 ASCII letters, digits, ``_``, ``-`` and ``.``, not
#: starting with ``.``. It is a file name (``<name>.json``, far below the 255-byte limit of
#: common file systems, with no separator, NUL or hidden-file dot) and a Redis key suffix.
STUDY_NAME_PATTERN = r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}$"
_STUDY_NAME = re.compile(STUDY_NAME_PATTERN)


def check_study_name(name: str) -> str:
    """``name`` if it matches :data:`STUDY_NAME_PATTERN`.

    Raises:
        InputError: it does not (``details["field"]`` is ``"study"``).
    """
    from workbench.errors import InputError

    if not isinstance(name, str) or not _STUDY_NAME.fullmatch(name):
        shown = name if not isinstance(name, str) or len(name) <= 40 else f"{name[:40]}..."
        raise InputError(
            f"study name {shown!r} must be 1-128 ASCII letters, digits, '_', '-' or '.', "
            "not starting with '.'",
            details={"field": "study"},
        )
    return name


class FileStudyStore:
    """Studies as ``<root>/<name>.json`` files."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / f"{check_study_name(name)}.json"

    def save(self, opt: Optimizer) -> None:
        save_file(opt, self.path(opt.name))

    def load(self, name: str) -> Optimizer:
        return load_file(self.path(name))

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def delete(self, name: str) -> bool:
        p = self.path(name)
        if p.is_file():
            p.unlink()
            return True
        return False

    def names(self) -> Iterator[str]:
        if self.root.is_dir():
            for p in sorted(self.root.glob("*.json")):
                yield p.stem


class RedisStudyStore:
    """Studies in Redis under ``<prefix>optimize:study:<name>`` (optional TTL)."""

    def __init__(self, adapter: RedisAdapter, *, ttl_s: float | None = None) -> None:
        self.adapter = adapter
        self.ttl_s = ttl_s

    def key(self, name: str) -> str:
        return self.adapter.key("optimize", "study", check_study_name(name))

    def save(self, opt: Optimizer) -> None:
        self.adapter.set(self.key(opt.name), dumps(opt), ttl_s=self.ttl_s)

    def load(self, name: str) -> Optimizer:
        raw = self.adapter.get(self.key(name))
        if raw is None:
            raise NotFoundError(f"study {name!r} does not exist", details={"study": name})
        return loads(raw)

    def exists(self, name: str) -> bool:
        return bool(self.adapter.exists(self.key(name)))

    def delete(self, name: str) -> bool:
        return bool(self.adapter.delete(self.key(name)))

    def names(self) -> Iterator[str]:
        base = self.adapter.key("optimize", "study", "")
        for key in sorted(self.adapter.scan("optimize:study:*")):
            yield key[len(base) :]
