"""Saving studies to files, Redis and PostgreSQL: versioned JSON, never pickle.

A saved study is one JSON document::

    {"format": "workbench.optimize.study", "version": 1, "saved_s": ..., "study": {...}}

where ``study`` is :meth:`Optimizer.to_dict` (space, objectives, strategy name, seed, trials
with outcomes and pending ones, the suggestion counter and the GP's warm-start
hyperparameters as plain lists of floats). JSON floats round-trip exactly, so a loaded study
warm-starts from the very hyperparameters the original would use and, with the same seed,
proposes the same next point. Loading refuses unknown formats and newer versions with
:class:`~workbench.errors.StorageFormatError` instead of guessing.

Redis keys (through :class:`~workbench.redis_adapter.RedisAdapter`, so the settings' prefix
applies): ``optimize:study:<name>`` is a hash ``{value: <document>, version: <n>}``, the
layout of :meth:`~workbench.redis_adapter.RedisAdapter.set_if_version`; studies are listed
with SCAN. A key written by an earlier workbench as a plain string is turned into that hash,
atomically and with its expiry kept, the first time it is read or written.

PostgreSQL (through :class:`~workbench.postgres_adapter.PostgresAdapter`, in the adapter's
schema): one row per study in ``optimize_studies (name, version, document, updated_at)``,
created by the migrations of the component ``optimize`` (:data:`PG_MIGRATIONS`). The
document is kept as ``json``, which stores the text verbatim (``jsonb`` would turn ``-0.0``
into ``0`` and re-render every float through ``numeric``).

The Redis and PostgreSQL stores are *shared*: several processes on several hosts may drive a
study at once. Each keeps a version number per study, raised by every write, and offers
:meth:`~RedisStudyStore.read` (the study with its version) and :meth:`~RedisStudyStore.commit`
(write only if the version is still the one read), on which
:mod:`workbench.optimize.shared` builds atomic ask and tell. :meth:`~RedisStudyStore.save`
remains for a single writer (it overwrites, and still raises the version so that no
concurrent commit is based on what it replaced).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import ConflictError, NotFoundError, StorageFormatError

if TYPE_CHECKING:  # pragma: no cover
    from workbench.optimize.optimizer import Optimizer
    from workbench.postgres_adapter import PostgresAdapter
    from workbench.redis_adapter import RedisAdapter

__all__ = [
    "FORMAT",
    "PG_MIGRATIONS",
    "STUDY_NAME_PATTERN",
    "VERSION",
    "FileStudyStore",
    "PostgresStudyStore",
    "RedisStudyStore",
    "StudySnapshot",
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


@dataclass(frozen=True)
class StudySnapshot:
    """A study as read from a shared store, with the version a write based on it must match.

    Attributes:
        study: The study, a fresh object owned by the caller.
        version: The store's version of the study when it was read (1 for a new study;
            every write raises it by one).
    """

    study: Optimizer
    version: int


def _missing(name: str) -> NotFoundError:
    return NotFoundError(f"study {name!r} does not exist", details={"study": name})


def _exists_already(name: str) -> ConflictError:
    return ConflictError(f"study {name!r} already exists", details={"study": name})


# KEYS[1]: a study key. Turns a plain string (written by an earlier workbench) into the hash
# {value, version = 1} with the same expiry. ARGV[1] == '1': return {value, version}.
_UPGRADE_AND_READ = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'string' then
  local value = redis.call('GET', KEYS[1])
  local ttl = redis.call('PTTL', KEYS[1])
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'value', value, 'version', 1)
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
end
if ARGV[1] == '1' then
  return redis.call('HMGET', KEYS[1], 'value', 'version')
end
return false
"""


class RedisStudyStore:
    """Studies in Redis under ``<prefix>optimize:study:<name>``, versioned (optional TTL).

    Args:
        adapter: The Redis connection (its prefix applies).
        ttl_s: Expire a study this many seconds after its last write (``None``: never).
    """

    kind = "redis"

    def __init__(self, adapter: RedisAdapter, *, ttl_s: float | None = None) -> None:
        self.adapter = adapter
        self.ttl_s = ttl_s

    def key(self, name: str) -> str:
        return self.adapter.key("optimize", "study", check_study_name(name))

    def _upgrade(self, key: str, *, read: bool) -> Any:
        return self.adapter.eval_script(_UPGRADE_AND_READ, [key], ["1" if read else "0"])

    def read(self, name: str) -> StudySnapshot:
        """The study ``name`` and its version.

        Raises:
            NotFoundError: no such study.
            StorageFormatError: the stored document is not one this workbench reads.
        """
        value, version = self._upgrade(self.key(name), read=True)
        if value is None:
            raise _missing(name)
        return StudySnapshot(loads(bytes(value)), int(version))

    def commit(self, opt: Optimizer, version: int) -> int | None:
        """Write ``opt`` if the stored study is still at ``version``.

        Returns:
            The new version, or ``None`` when another writer came first (or the study was
            deleted): read it again and redo the change.
        """
        return self.adapter.set_if_version(
            self.key(opt.name), dumps(opt), version, ttl_s=self.ttl_s
        )

    def create(self, opt: Optimizer) -> StudySnapshot:
        """Store a new study atomically (version 1).

        Raises:
            ConflictError: a study of that name exists.
        """
        key = self.key(opt.name)
        self._upgrade(key, read=False)
        version = self.adapter.set_if_version(key, dumps(opt), 0, ttl_s=self.ttl_s)
        if version is None:
            raise _exists_already(opt.name)
        return StudySnapshot(opt, version)

    def save(self, opt: Optimizer) -> None:
        """Overwrite the study (raising its version); for a single writer."""
        key = self.key(opt.name)
        self._upgrade(key, read=False)
        self.adapter.set_versioned(key, dumps(opt), ttl_s=self.ttl_s)

    def load(self, name: str) -> Optimizer:
        return self.read(name).study

    def exists(self, name: str) -> bool:
        return bool(self.adapter.exists(self.key(name)))

    def delete(self, name: str) -> bool:
        return bool(self.adapter.delete(self.key(name)))

    def names(self) -> Iterator[str]:
        base = self.adapter.key("optimize", "study", "")
        for key in sorted(self.adapter.scan("optimize:study:*")):
            yield key[len(base) :]


#: The PostgreSQL migrations of the component ``optimize`` (never edit or reorder a step).
PG_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE optimize_studies (
        name text PRIMARY KEY,
        version bigint NOT NULL CHECK (version >= 1),
        document json NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
)


class PostgresStudyStore:
    """Studies as rows of ``optimize_studies`` in PostgreSQL, versioned.

    Why optimistic writes (``UPDATE ... WHERE version = %s``) rather than ``SELECT ... FOR
    UPDATE``: an ask fits a GP and optimises an acquisition function for up to
    ``ask_time_limit_s`` (seconds). Under ``FOR UPDATE`` the row lock, an open transaction
    and a pooled connection would be held for all that time, every other writer of the study
    would queue behind it (each holding a connection of its own), and a worker that hangs
    would stall the study until its statement timeout. With a version check the row is
    locked only for the one ``UPDATE``; a writer that lost the race reads the study again
    and redoes its change, and the same retry loop serves Redis too
    (:mod:`workbench.optimize.shared`).

    Args:
        adapter: The PostgreSQL connection; the table lives in its schema.

    The table is created (by :meth:`migrate`) on first use, not at construction, so building
    a store never touches the network.
    """

    kind = "postgres"
    component = "optimize"

    def __init__(self, adapter: PostgresAdapter) -> None:
        self.adapter = adapter
        self._migrated = False
        self._migrate_lock = threading.Lock()

    def migrate(self) -> int:
        """Apply the missing :data:`PG_MIGRATIONS`; returns the schema version."""
        with self._migrate_lock:
            version = self.adapter.migrate(self.component, PG_MIGRATIONS)
            self._migrated = True
        return version

    def _ready(self) -> PostgresAdapter:
        if not self._migrated:
            self.migrate()
        return self.adapter

    def read(self, name: str) -> StudySnapshot:
        """The study ``name`` and its version (see :meth:`RedisStudyStore.read`)."""
        row = self._ready().fetchone(
            "SELECT version, document::text FROM optimize_studies WHERE name = %s",
            (check_study_name(name),),
        )
        if row is None:
            raise _missing(name)
        return StudySnapshot(loads(row[1]), int(row[0]))

    def commit(self, opt: Optimizer, version: int) -> int | None:
        """Write ``opt`` if the row is still at ``version`` (see :meth:`RedisStudyStore.commit`)."""
        row = self._ready().fetchone(
            "UPDATE optimize_studies SET document = %s::json, version = version + 1, "
            "updated_at = now() WHERE name = %s AND version = %s RETURNING version",
            (dumps(opt).decode(), check_study_name(opt.name), version),
        )
        return None if row is None else int(row[0])

    def create(self, opt: Optimizer) -> StudySnapshot:
        """Insert a new study atomically (version 1).

        Raises:
            ConflictError: a study of that name exists.
        """
        row = self._ready().fetchone(
            "INSERT INTO optimize_studies (name, version, document) VALUES (%s, 1, %s::json) "
            "ON CONFLICT (name) DO NOTHING RETURNING version",
            (check_study_name(opt.name), dumps(opt).decode()),
        )
        if row is None:
            raise _exists_already(opt.name)
        return StudySnapshot(opt, int(row[0]))

    def save(self, opt: Optimizer) -> None:
        """Insert or overwrite the study (raising its version); for a single writer."""
        self._ready().execute(
            "INSERT INTO optimize_studies (name, version, document) VALUES (%s, 1, %s::json) "
            "ON CONFLICT (name) DO UPDATE SET document = EXCLUDED.document, "
            "version = optimize_studies.version + 1, updated_at = now()",
            (check_study_name(opt.name), dumps(opt).decode()),
        )

    def load(self, name: str) -> Optimizer:
        return self.read(name).study

    def exists(self, name: str) -> bool:
        row = self._ready().fetchone(
            "SELECT 1 FROM optimize_studies WHERE name = %s", (check_study_name(name),)
        )
        return row is not None

    def delete(self, name: str) -> bool:
        deleted = self._ready().execute(
            "DELETE FROM optimize_studies WHERE name = %s", (check_study_name(name),)
        )
        return deleted > 0

    def names(self) -> Iterator[str]:
        rows = self._ready().fetchall("SELECT name FROM optimize_studies ORDER BY name")
        for (name,) in rows:
            yield str(name)
