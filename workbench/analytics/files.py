"""Bulk files in and out of the analytics store: JSON Lines, CSV and Parquet.

:func:`ingest_file` streams a file into the store in chunks of ``batch`` records, one
:meth:`~workbench.analytics.store.AnalyticsStore.ingest` (one transaction) per chunk, so
memory stays bounded by the chunk, never the file: JSON Lines are read ``batch`` lines at a
time (each parsed with orjson), CSV through pandas' ``read_csv(chunksize=batch)``, Parquet
through pyarrow's ``ParquetFile.iter_batches(batch_size=batch)``. A file that stops halfway
(a crash, a bad disk) leaves the chunks before it committed; ingesting the same file again is
safe, since the store is idempotent (they count as duplicates).

Rejections carry the position in the file: for JSON Lines ``index`` is the 0-based line
number (``index + 1`` is what an editor shows; blank lines are skipped but counted, and a line
that is not JSON is rejected with field ``record``); for CSV and Parquet it is the 0-based
data row (the CSV header is not a row). At most ``max_rejections`` are kept in the report;
``rejected_total`` counts them all.

Column conventions (what :func:`export` writes, so an export ingests back unchanged):
``parameters`` is JSON text of an object (canonical JSON on export); ``timestamp`` is ISO 8601
text or epoch seconds in CSV and JSON Lines, a UTC timestamp column in Parquet; text columns of
CSV are read as text verbatim (only an empty field is missing), so an id such as ``007`` or
``NA`` stays what it is; CSV cannot tell an empty text from a missing one, so an empty
``provider`` reads back as ``"unknown"`` (Parquet and JSON Lines keep it). pandas infers
column types per chunk, so numbers and timestamps are parsed value by value where a chunk
mixes them with text: one bad value rejects its row, not its chunk.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pandas as pd

from workbench._optional import require
from workbench.analytics.records import COLUMNS, STRING_COLUMNS, Rejection, canonical_json
from workbench.analytics.store import Filters, IngestReport
from workbench.errors import InputError

__all__ = ["FORMATS", "FileIngestReport", "export", "ingest_file"]

#: Formats by file suffix.
FORMATS: dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}
_CSV_TEXT = sorted({*STRING_COLUMNS, "parameters"})
_CSV_NUMBERS = (
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "cost",
    "quality",
    "user_satisfaction",
)
Progress = bool | Callable[[int], None] | None


@dataclass(frozen=True)
class FileIngestReport(IngestReport):
    """An :class:`~workbench.analytics.store.IngestReport` summed over a file's chunks.

    Attributes:
        rows: Records (lines, rows) read from the file.
        chunks: Ingest calls (transactions) made.
        rejected_total: Every rejection, including those beyond the ``max_rejections`` kept
            in ``rejected``.
    """

    rows: int = 0
    chunks: int = 0
    rejected_total: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The base report's fields plus ``rows``, ``chunks`` and ``rejected_total``."""
        return {
            **super().to_dict(),
            "rows": self.rows,
            "chunks": self.chunks,
            "rejected_total": self.rejected_total,
        }


def _format_of(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in set(FORMATS.values()):
            raise InputError(
                f"file format={format!r} is not one of {sorted(set(FORMATS.values()))}"
            )
        return format
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(
            f"cannot tell the format of {str(path)!r} from its suffix; name it "
            f"{', '.join(FORMATS)} or pass format="
        )
    return kind


class _Bar:
    """Progress as a tqdm bar (``True``), a callback of records done, or nothing."""

    def __init__(self, progress: Progress, total: int | None, unit: str, desc: str) -> None:
        self._callback = progress if callable(progress) else None
        self._bar: Any = None
        if progress is True:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit=unit, unit_scale=True, desc=desc, dynamic_ncols=True)
        self._done = 0

    def update(self, amount: int, records: int) -> None:
        if self._bar is not None:
            self._bar.update(amount)
        if self._callback is not None:
            self._callback(records)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def ingest_file(
    store: Any,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    batch: int = 100_000,
    progress: Progress = None,
    max_rejections: int = 10_000,
) -> FileIngestReport:
    """Stream a JSON Lines, CSV or Parquet file into ``store``, ``batch`` records per commit.

    Args:
        store: Anything with ``ingest(records) -> IngestReport`` (an ``AnalyticsStore``).
        path: The file.
        format: ``"jsonl"``, ``"csv"`` or ``"parquet"``; default: from the suffix
            (``.jsonl``/``.ndjson``, ``.csv``, ``.parquet``).
        batch: Records per chunk (one transaction each); bounds the memory used.
        progress: ``True`` shows a tqdm bar (bytes for text files, rows for Parquet); a
            callable gets the number of records read so far after each chunk.
        max_rejections: Most rejections kept in the report (all are counted).

    Returns:
        The summed report; rejection indexes are positions in the file (module docstring).

    Raises:
        InputError: Unknown format, bad arguments, or a file the reader cannot parse at all
            (a CSV without a header, a file that is not Parquet).
        FileNotFoundError: ``path`` does not exist.
        BackendUnavailable: The store went away; the chunks before it are committed.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"ingest_file batch={batch!r} must be an integer >= 1")
    if max_rejections < 0:
        raise InputError(f"ingest_file max_rejections={max_rejections!r} must be >= 0")
    p = Path(path)
    kind = _format_of(p, format)
    if not p.is_file():
        raise FileNotFoundError(f"no file at {str(p)!r}")
    start = time.perf_counter()
    reader = {"jsonl": _jsonl_chunks, "csv": _csv_chunks, "parquet": _parquet_chunks}[kind]
    accepted = duplicates = rows = chunks = rejected_total = 0
    kept: list[Rejection] = []
    for records, positions, refused, bar in reader(p, batch, progress):
        rows += len(positions) + len(refused)
        found = list(refused)
        if len(positions):
            report = store.ingest(records)
            chunks += 1
            accepted += int(report.accepted)
            duplicates += int(report.duplicates)
            found += [
                Rejection(int(positions[r.index]), r.field, r.reason) for r in report.rejected
            ]
        rejected_total += len(found)
        room = max_rejections - len(kept)
        if room > 0:
            kept.extend(sorted(found, key=lambda r: r.index)[:room])
        bar(rows)
    return FileIngestReport(
        accepted=accepted,
        duplicates=duplicates,
        rejected=kept,
        seconds=time.perf_counter() - start,
        rows=rows,
        chunks=chunks,
        rejected_total=rejected_total,
    )


# Each reader yields (records, positions, refused, tick): the records of one chunk for
# store.ingest, the file position of each record (so the store's indexes map back), the
# rejections the reader itself made, and a callable reporting progress after the chunk.
_Chunk = tuple[Any, np.ndarray, list[Rejection], Callable[[int], None]]


def _jsonl_chunks(path: Path, batch: int, progress: Progress) -> Iterator[_Chunk]:
    bar = _Bar(progress, path.stat().st_size, "B", path.name)
    try:
        with path.open("rb") as f:
            line_no = 0
            done = False
            while not done:
                records: list[Any] = []
                positions: list[int] = []
                refused: list[Rejection] = []
                size = 0
                while len(records) + len(refused) < batch:
                    line = f.readline()
                    if not line:
                        done = True
                        break
                    size += len(line)
                    here = line_no
                    line_no += 1
                    if not line.strip():
                        continue
                    try:
                        records.append(orjson.loads(line))
                    except orjson.JSONDecodeError as exc:
                        refused.append(
                            Rejection(here, "record", f"line {here + 1} is not valid JSON ({exc})")
                        )
                        continue
                    positions.append(here)
                if records or refused:
                    yield records, np.asarray(positions, dtype=np.int64), refused, _tick(bar, size)
                else:
                    bar.update(size, 0)
    finally:
        bar.close()


def _tick(bar: _Bar, amount: int) -> Callable[[int], None]:
    return lambda records: bar.update(amount, records)


def _csv_chunks(path: Path, batch: int, progress: Progress) -> Iterator[_Chunk]:
    bar = _Bar(progress, path.stat().st_size, "B", path.name)
    try:
        with path.open("rb") as f:
            try:
                header = pd.read_csv(f, nrows=0).columns
            except pd.errors.EmptyDataError:
                raise InputError(
                    f"CSV file {str(path)!r} is empty; it needs a header row"
                ) from None
            f.seek(0)
            text = {c: str for c in _CSV_TEXT if c in header}
            reader = pd.read_csv(
                f,
                chunksize=batch,
                dtype=text,
                keep_default_na=False,
                na_values=[""],
                low_memory=False,
            )
            offset = 0
            seen = 0
            try:
                for chunk in reader:
                    chunk = _csv_types(chunk)
                    positions = np.arange(offset, offset + len(chunk), dtype=np.int64)
                    offset += len(chunk)
                    chunk = chunk.reset_index(drop=True)
                    now = _tell(f)
                    yield chunk, positions, [], _tick(bar, max(0, now - seen))
                    seen = max(seen, now)
            except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                raise InputError(
                    f"CSV file {str(path)!r} cannot be parsed after data row {offset} ({exc}); "
                    "rows before it are stored"
                ) from None
    finally:
        bar.close()


def _tell(f: IO[bytes]) -> int:
    try:
        return f.tell()
    except (OSError, ValueError):
        return 0


def _csv_types(chunk: pd.DataFrame) -> pd.DataFrame:
    """Fix the columns pandas read as text because one value of the chunk is not a number.

    pandas infers types per chunk, so one bad value would turn its whole column into text
    and every row of the chunk would be rejected. Numbers (and ISO 8601 timestamps) are
    parsed here; only the values that do not parse stay text, for validation to name.
    """
    chunk = chunk.copy()
    for name in _CSV_NUMBERS:
        if name in chunk.columns and _is_text(chunk[name]):
            chunk[name] = _parsed_or_text(chunk[name], pd.to_numeric(chunk[name], errors="coerce"))
    if "timestamp" in chunk.columns and _is_text(chunk["timestamp"]):
        text = chunk["timestamp"]
        numbers = pd.to_numeric(text, errors="coerce")
        iso = pd.to_datetime(
            text.where(numbers.isna()), utc=True, format="ISO8601", errors="coerce"
        )
        if iso.notna().all():  # the common case: one vectorised datetime column
            chunk["timestamp"] = iso
        elif numbers.notna().all():
            chunk["timestamp"] = numbers
        else:
            out = _parsed_or_text(text, numbers)
            hit = iso.notna().to_numpy()
            out[hit] = iso[hit].astype(object)
            chunk["timestamp"] = out
    return chunk


def _is_text(column: pd.Series) -> bool:
    return column.dtype == object or isinstance(column.dtype, pd.StringDtype)


def _parsed_or_text(text: pd.Series, parsed: pd.Series) -> pd.Series:
    """``parsed`` where it parsed (or the text was missing), else the original text."""
    if parsed.notna().sum() == text.notna().sum():
        return parsed
    out = text.astype(object).copy()
    hit = parsed.notna().to_numpy()
    out[hit] = parsed[hit].astype(object)
    return out


def _parquet_chunks(path: Path, batch: int, progress: Progress) -> Iterator[_Chunk]:
    pq = require("pyarrow.parquet", purpose="reading Parquet files")
    pa = require("pyarrow", purpose="reading Parquet files")
    try:
        source = pq.ParquetFile(path)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{str(path)!r} is not a Parquet file ({exc})") from None
    bar = _Bar(progress, source.metadata.num_rows, "rec", path.name)
    try:
        names = [c for c in source.schema_arrow.names if c in COLUMNS]
        offset = 0
        for record_batch in source.iter_batches(batch_size=batch, columns=names):
            table = pa.Table.from_batches([record_batch])
            n = table.num_rows
            positions = np.arange(offset, offset + n, dtype=np.int64)
            offset += n
            yield table, positions, [], _tick(bar, n)
    finally:
        bar.close()


# -- export --------------------------------------------------------------------------------


def export(
    store: Any,
    path: str | os.PathLike[str],
    filters: Filters | None = None,
    *,
    format: str | None = None,
    columns: Sequence[str] | None = None,
) -> int:
    """Write the store's records (those matching ``filters``) to a Parquet, CSV or JSON Lines
    file that :func:`ingest_file` reads back unchanged.

    The records are read with :meth:`~workbench.analytics.store.AnalyticsStore.frame`, so the
    export is held in memory once; filter by time range to export a large store in parts.

    Args:
        store: An ``AnalyticsStore``.
        path: The file to write (replaced if it exists; written to a temporary name first).
        filters: Which records.
        format: ``"parquet"``, ``"csv"`` or ``"jsonl"``; default: from the suffix.
        columns: A subset of the record's columns (default: all).

    Returns:
        The number of records written.
    """
    p = Path(path)
    kind = _format_of(p, format)
    frame = store.frame(filters, columns=columns)
    out = frame.copy()
    if "parameters" in out.columns:
        out["parameters"] = [canonical_json(d) for d in out["parameters"]]
    if "timestamp" in out.columns:
        out["timestamp"] = pd.to_datetime(out["timestamp"].to_numpy(np.int64), unit="us", utc=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "parquet":
            require("pyarrow", purpose="writing Parquet files")
            out.to_parquet(tmp, index=False)
        elif kind == "csv":
            if "timestamp" in out.columns:
                out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            out.to_csv(tmp, index=False)
        else:
            if "timestamp" in out.columns:
                out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            with tmp.open("wb") as f:
                for record in out.to_dict("records"):
                    clean = {k: (None if _is_nan(v) else v) for k, v in record.items()}
                    f.write(orjson.dumps(clean, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return len(frame)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value
