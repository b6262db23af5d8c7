"""CSV and Parquet files as columns: the one reader of reference and comparison files.

``mlwatch drift`` and the scheduler's file references both read through
:func:`read_columns`, so a file is typed the same way wherever it is compared: integers
without missing values as int64, other numbers as float64, strings dictionary-encoded
(counting categories then works on integer codes),
nested columns left out with a note on stderr. Files are read with Arrow in record batches
(Parquet a few columns at a time, threaded); a progress line on stderr shows the bytes
read of a large file on a terminal.

The format is decided by content, not by name: a file that starts with the Parquet magic
bytes ``PAR1`` is Parquet whatever it is called; one compressed with gzip, bz2 or zstd is
decompressed; anything else must be CSV text in UTF-8. The first KiB is looked at first,
so an image, a spreadsheet, JSON or HTML is refused with a message that names the file
and what it seems to hold, instead of a decoder or parser error on its bytes. Messages
from Arrow and pandas are passed through :func:`printable`: a parser quoting a row of
binary data must not write that data to the terminal.
"""

from __future__ import annotations

import codecs
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from mlwatch.errors import InputError
from mlwatch.progress import Progress

PROGRESS_MIN_BYTES = 32 << 20  # below this a file reads in well under a second
SNIFF_BYTES = 1024  # the part of a file looked at to decide its format
PARQUET_MAGIC = b"PAR1"
PARQUET_SUFFIXES = (".parquet", ".pq")
EXPECTED = "expected CSV text or Parquet"

# Leading bytes of files often handed over by mistake, to say what the file is. Only
# signatures that text cannot start with (non-ASCII or NUL bytes, or long enough).
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook is one)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Office document (.xls, .doc)"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"ARROW1\x00\x00", "an Arrow IPC (Feather) file"),
)
_JSON_START = re.compile(r"\{|\[\s*([\[{\"\]\d-]|$)")  # "[time],value" stays CSV


def read_columns(
    path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    progress: bool | None = None,
    err: TextIO | None = None,
) -> dict[str, Any]:
    """A CSV or Parquet file as ``{column: array}``: numbers as numpy arrays, strings as
    pandas Categoricals (dictionary-encoded), other types as numpy arrays. ``columns``
    limits a Parquet read to those that exist (a CSV is read whole, then selected)."""
    import pyarrow as pa

    err = err if err is not None else sys.stderr
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes; {EXPECTED})")
    parquet, codec = _detect(path)
    show = progress if progress is not None else (err.isatty() and size >= PROGRESS_MIN_BYTES)
    bar = Progress(f"reading {path.name}", size, out=err, enabled=bool(show), unit="MB", scale=1e6)
    try:
        table = _read_parquet(path, columns, bar) if parquet else _read_csv(path, codec, bar)
    except (pa.ArrowException, OSError) as exc:
        what = "Parquet" if parquet else _csv_label(codec)
        raise InputError(f"{path}: cannot read as {what}: {printable(str(exc))}") from None
    bar.update(size)
    if table.num_rows == 0:
        raise InputError(f"{path}: no rows")
    return _columns(table, path, columns, err)


def _read_parquet(path: Path, columns: Sequence[str] | None, bar: Progress) -> Any:
    """Strings as dictionaries (counting categories then works on integer codes), a few
    columns at a time: threaded, and a progress line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    strings = [
        f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]
    pf = pq.ParquetFile(path, read_dictionary=strings)
    names = [n for n in pf.schema_arrow.names if columns is None or n in columns]
    if not names:
        raise InputError(f"{path}: none of the columns {', '.join(columns or ())}")
    step = max(1, len(names) // 10)
    parts = []
    for i in range(0, len(names), step):
        parts.append(pf.read(columns=names[i : i + step], use_threads=True))
        bar.update(int(bar.total * min(len(names), i + step) / len(names)))
    table = parts[0]
    for part in parts[1:]:
        for field, column in zip(part.schema, part.columns, strict=True):
            table = table.append_column(field, column)
    return table


def _read_csv(path: Path, codec: str | None, bar: Progress) -> Any:
    """Record batches of 8 MiB; strings dictionary-encoded up to 65,536 categories, the
    usual missing-value spellings (``""``, ``NA``, ``null``, ...) missing in every column.
    Arrow types a column from its first block; a file whose later blocks disagree (an
    integer column with a decimal further down) is read whole by pandas instead."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    options = pacsv.ConvertOptions(
        auto_dict_encode=True, auto_dict_max_cardinality=1 << 16, strings_can_be_null=True
    )
    with pa.OSFile(str(path)) as raw:
        source = pa.CompressedInputStream(raw, codec) if codec else raw
        try:
            reader = pacsv.open_csv(
                source, read_options=pacsv.ReadOptions(block_size=8 << 20), convert_options=options
            )
            batches = []
            for batch in reader:
                batches.append(batch)
                bar.update(raw.tell())
        except pa.ArrowInvalid:  # blocks typed differently (or a bad row): pandas types it
            return _read_csv_whole(path, codec)
    _check_utf8(path, codec, reader.schema)
    return pa.Table.from_batches(batches, schema=reader.schema)


def _check_utf8(path: Path, codec: str | None, schema: Any) -> None:
    """Arrow reads a CSV column with bytes that are not UTF-8 as binary: its categories
    would be ``b'abc'``, never equal to the other file's ``'abc'``. Refuse it instead."""
    import pyarrow as pa

    def binary(t: Any) -> bool:
        t = t.value_type if pa.types.is_dictionary(t) else t
        return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t))

    names = [f.name for f in schema if binary(f.type)]
    if names:
        raise InputError(
            f"{path}: cannot read as {_csv_label(codec)}: not UTF-8 text in column(s) "
            f"{printable(', '.join(names))} (save it as UTF-8)"
        )


def _read_csv_whole(path: Path, codec: str | None) -> Any:
    """The whole file through pandas; its errors (which name the line) as InputError."""
    import pandas as pd
    import pyarrow as pa

    try:
        with pa.OSFile(str(path)) as raw:
            source = pa.CompressedInputStream(raw, codec) if codec else raw
            frame = pd.read_csv(source, low_memory=False)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: cannot read as {_csv_label(codec)}: not UTF-8 text "
            f"(byte 0x{exc.object[exc.start]:02x} further down; save it as UTF-8)"
        ) from None
    except ValueError as exc:  # pandas' parser errors, a file of blank lines
        raise InputError(
            f"{path}: cannot read as {_csv_label(codec)}: {printable(str(exc))}"
        ) from None
    return pa.Table.from_pandas(frame, preserve_index=False)


def _csv_label(codec: str | None) -> str:
    return f"{codec}-compressed CSV" if codec else "CSV"


def printable(text: str, limit: int = 200) -> str:
    """``text`` safe for a one-line message: line breaks and tabs as spaces, other
    control characters and undecodable bytes (U+FFFD) as ``?``, cut to ``limit``
    characters. Parser messages quote the offending row, which may be binary data."""
    clean = "".join(
        " " if c in "\t\n\r" else c if c.isprintable() and c != "\ufffd" else "?" for c in text
    )
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _detect(path: Path) -> tuple[bool, str | None]:
    """``(is Parquet, compression codec of a CSV)`` from the file's first bytes; an
    InputError naming the file and what it seems to hold when it is neither."""
    head = _head(path)
    if head.startswith(PARQUET_MAGIC):
        return True, None
    codec = _codec(head)
    kind = _not_csv(_decompressed_head(path, codec) if codec else head)
    held = f"{codec}-compressed " if codec else ""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        raise InputError(
            f"{path}: cannot read as Parquet: no PAR1 magic bytes at the start "
            f"(the file holds {held}{kind or 'CSV text'})"
        )
    if kind:
        raise InputError(f"{path}: not a CSV or Parquet file ({held}{kind}; {EXPECTED})")
    return False, codec


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(SNIFF_BYTES)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _codec(head: bytes) -> str | None:
    """The compression that Arrow can undo, from its magic bytes."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head[:3] == b"BZh" and head[4:10] == b"1AY&SY":
        return "bz2"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return None


def _decompressed_head(path: Path, codec: str) -> bytes:
    import pyarrow as pa

    try:
        with pa.OSFile(str(path)) as raw, pa.CompressedInputStream(raw, codec) as stream:
            return bytes(stream.read(SNIFF_BYTES))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"{path}: cannot read as {_csv_label(codec)}: {printable(str(exc))}"
        ) from None


def _not_csv(head: bytes) -> str | None:
    """What the first bytes hold when it is not CSV text (None when it may be)."""
    if not head:
        return "no data"
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return f"binary data: {name}"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text — save it as UTF-8"
    controls = sum(1 for b in head if b < 0x20 and b not in b"\t\n\r\f\v")
    if b"\x00" in head or controls > len(head) // 100:
        return "binary data"
    try:  # not final: the first KiB may end inside a character
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        return (
            f"text that is not UTF-8, byte 0x{head[exc.start]:02x} at offset {exc.start}"
            " — save it as UTF-8"
        )
    start = text.lstrip("\ufeff \t\r\n")
    if _JSON_START.match(start):
        return "JSON text"
    if start.startswith("<"):
        return "HTML or XML text"
    return None


def _columns(table: Any, path: Path, columns: Sequence[str] | None, err: TextIO) -> dict[str, Any]:
    import pyarrow as pa

    nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
    if nested:
        err.write(
            f"mlwatch: {path.name}: nested columns (lists, structs, maps) are not "
            f"compared: {', '.join(nested)}\n"
        )
    out: dict[str, Any] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if name in nested or (columns is not None and name not in columns):
            continue
        if pa.types.is_integer(column.type) and column.null_count == 0:
            out[name] = column.to_numpy()  # int64: a hashed id reads "101", as served
        elif pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            out[name] = column.to_numpy().astype("float64", copy=False)
        elif pa.types.is_dictionary(column.type):
            out[name] = column.to_pandas()  # a pandas Categorical: codes, no string objects
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out
