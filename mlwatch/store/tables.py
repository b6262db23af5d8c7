"""CSV and Parquet files as columns: the one reader of reference and comparison files.

``mlwatch drift`` and the scheduler's file references both read through
:func:`read_columns`, so a file is typed the same way wherever it is compared: integers
without missing values as int64, other numbers as float64, strings dictionary-encoded
(counting categories then works on integer codes),
nested columns left out with a note on stderr. Files are read with Arrow in record batches
(Parquet a few columns at a time, threaded); a progress line on stderr shows the bytes
read of a large file on a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from mlwatch.errors import InputError
from mlwatch.progress import Progress

PROGRESS_MIN_BYTES = 32 << 20  # below this a file reads in well under a second


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
    show = progress if progress is not None else (err.isatty() and size >= PROGRESS_MIN_BYTES)
    bar = Progress(f"reading {path.name}", size, out=err, enabled=bool(show), unit="MB", scale=1e6)
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        table = _read_parquet(path, columns, bar) if parquet else _read_csv(path, bar)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(
            f"{path}: cannot read as {'Parquet' if parquet else 'CSV'}: {exc}"
        ) from None
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


def _read_csv(path: Path, bar: Progress) -> Any:
    """Record batches of 8 MiB; strings dictionary-encoded up to 65,536 categories, the
    usual missing-value spellings (``""``, ``NA``, ``null``, ...) missing in every column.
    Arrow types a column from its first block; a file whose later blocks disagree (an
    integer column with a decimal further down) is read whole by pandas instead."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    options = pacsv.ConvertOptions(
        auto_dict_encode=True, auto_dict_max_cardinality=1 << 16, strings_can_be_null=True
    )
    try:
        with pa.OSFile(str(path)) as source:
            reader = pacsv.open_csv(
                source, read_options=pacsv.ReadOptions(block_size=8 << 20), convert_options=options
            )
            batches = []
            for batch in reader:
                batches.append(batch)
                bar.update(source.tell())
        return pa.Table.from_batches(batches, schema=reader.schema)
    except pa.ArrowInvalid:  # blocks typed differently: let pandas type the whole file
        import pandas as pd

        frame = pd.read_csv(path, low_memory=False)
        return pa.Table.from_pandas(frame, preserve_index=False)


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
