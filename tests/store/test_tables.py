"""The one CSV / Parquet reader: types as the comparison and the redaction need them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlwatch.errors import InputError
from mlwatch.store.tables import read_columns


def test_integers_stay_integers_and_missing_strings_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "ref.csv"
    path.write_text("cust,city,amount,n\n101,paris,1.5,1\n102,,2.5,\n103,NA,3.0,3\n104,lyon,,4\n")
    cols = read_columns(path)
    assert cols["cust"].dtype == np.int64 and str(cols["cust"][0]) == "101"  # hashed as served
    assert cols["amount"].dtype == np.float64 and np.isnan(cols["amount"][3])
    assert cols["n"].dtype == np.float64 and np.isnan(cols["n"][1])  # integers with a gap
    city = cols["city"]
    assert set(city.cat.categories) == {"lyon", "paris"} and int(city.isna().sum()) == 2


def test_a_type_change_after_the_first_block_falls_back_to_reading_it_whole(tmp_path: Path) -> None:
    """Arrow types a column from its first 8 MiB; a decimal further down must not fail the
    whole file (the column is then a float column)."""
    path = tmp_path / "big.csv"
    rows = 900_000
    with path.open("w") as out:
        out.write("id,city\n")
        out.write("".join(f"{i},c{i % 5}\n" for i in range(rows)))
        out.write("12.5,c1\n")
    assert path.stat().st_size > 8 << 20
    cols = read_columns(path, columns=["city"])
    assert set(cols) == {"city"} and len(cols["city"]) == rows + 1


def test_parquet_reads_only_the_listed_columns(tmp_path: Path) -> None:
    path = tmp_path / "ref.parquet"
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, 1.5]}).to_parquet(path)
    assert set(read_columns(path, columns=["a", "c"])) == {"a", "c"}
    with pytest.raises(InputError, match="none of the columns zz"):
        read_columns(path, columns=["zz"])


def test_clear_errors_for_what_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_columns(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    with pytest.raises(InputError, match="no rows"):
        read_columns(empty)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="cannot read as Parquet"):
        read_columns(broken)


def test_nested_columns_are_left_out_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "nested.parquet"
    pd.DataFrame({"x": [1.0, 2.0], "tags": [[1, 2], [3]]}).to_parquet(path)
    err = io.StringIO()
    assert set(read_columns(path, err=err)) == {"x"}
    assert "nested columns" in err.getvalue() and "tags" in err.getvalue()
