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


def _png() -> bytes:
    """A valid 1x1 PNG: a signature, then chunks with NUL bytes in their lengths."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


def _is_printable(message: str) -> bool:
    return message.isprintable() and "\ufffd" not in message


@pytest.mark.parametrize("name", ["img.png", "img.csv"])
def test_a_binary_file_is_refused_by_its_content_with_its_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(_png())
    with pytest.raises(InputError) as caught:
        read_columns(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a CSV or Parquet file (binary data: a PNG image;")
    assert message.endswith("expected CSV text or Parquet)") and _is_printable(message)


def test_nul_bytes_are_binary_data(tmp_path: Path) -> None:
    path = tmp_path / "blob.dat"
    path.write_bytes(b"a,b\n1,\x00\x00\x07\x00\n")
    with pytest.raises(InputError, match=r"blob\.dat: not a CSV or Parquet file \(binary data;"):
        read_columns(path)


def test_parquet_is_recognised_by_its_magic_bytes_whatever_its_name(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "x"]})
    frame.to_parquet(tmp_path / "data.csv")
    cols = read_columns(tmp_path / "data.csv")
    assert cols["a"].tolist() == [1, 2, 3] and list(cols["b"]) == ["x", "y", "x"]


def test_a_parquet_name_without_parquet_content_says_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError) as caught:
        read_columns(path)
    assert str(caught.value).startswith(f"{path}: cannot read as Parquet: no PAR1 magic bytes")
    assert "CSV text" in str(caught.value)


def test_a_damaged_parquet_file_never_prints_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "cut.parquet"
    pd.DataFrame({"a": np.arange(1000.0)}).to_parquet(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InputError) as caught:
        read_columns(path)
    assert str(caught.value).startswith(f"{path}: cannot read as Parquet: ")
    assert _is_printable(str(caught.value))


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('{"a": 1, "b": [1, 2]}\n', "JSON text"),
        ('[\n  {"a": 1},\n  {"a": 2}\n]\n', "JSON text"),
        ("<!DOCTYPE html>\n<html><body>Not found</body></html>\n", "HTML or XML text"),
    ],
)
def test_json_and_html_text_are_not_read_as_csv(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        read_columns(path)
    assert str(caught.value) == (
        f"{path}: not a CSV or Parquet file ({kind}; expected CSV text or Parquet)"
    )


def test_a_csv_header_in_brackets_is_still_csv(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("[time],value\n1,2.5\n")
    assert read_columns(path)["[time]"].tolist() == [1]


def test_text_in_another_encoding_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("name,v\ncafé,1\nthé,2\n".encode("latin-1"))
    with pytest.raises(InputError) as caught:
        read_columns(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: not a CSV or Parquet file (text that is not UTF-8")
    assert "byte 0xe9 at offset 10" in message and "save it as UTF-8" in message


def test_invalid_utf8_after_the_first_kib_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    path.write_bytes(b"name,v\n" + b"abc,1\n" * 400 + "thé,2\n".encode("latin-1"))
    with pytest.raises(InputError) as caught:
        read_columns(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot read as CSV: not UTF-8 text in column(s) name")
    assert _is_printable(message)


def test_invalid_utf8_in_a_later_block_names_the_file(tmp_path: Path) -> None:
    """A string column typed from the first 8 MiB block, a Latin-1 byte in a later one."""
    path = tmp_path / "late.csv"
    with path.open("wb") as out:
        out.write(b"name,v\n" + b"abcdefgh,1\n" * 900_000 + "thé,2\n".encode("latin-1"))
    with pytest.raises(InputError) as caught:
        read_columns(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot read as CSV: not UTF-8 text (byte 0xe9")
    assert _is_printable(message)


def test_an_empty_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.csv: empty file \(0 bytes; expected CSV"):
        read_columns(path)


@pytest.mark.parametrize("codec", ["gzip", "bz2"])
def test_compressed_csv_is_read_whatever_its_name(tmp_path: Path, codec: str) -> None:
    import bz2
    import gzip

    data = b"a,b\n1,x\n2,y\n"
    path = tmp_path / "data.csv"
    path.write_bytes(gzip.compress(data) if codec == "gzip" else bz2.compress(data))
    cols = read_columns(path)
    assert cols["a"].tolist() == [1, 2] and list(cols["b"]) == ["x", "y"]


def test_compressed_binary_data_is_refused(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "img.png.gz"
    path.write_bytes(gzip.compress(_png()))
    with pytest.raises(InputError) as caught:
        read_columns(path)
    assert str(caught.value).startswith(
        f"{path}: not a CSV or Parquet file (gzip-compressed binary data: a PNG image;"
    )


def test_a_csv_parse_error_names_the_file_and_stays_printable(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n" + "1,2\n" * 300 + "3,4,\x01\x02,5\n")  # past the first KiB
    with pytest.raises(InputError) as caught:
        read_columns(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot read as CSV: ") and _is_printable(message)


def test_printable_replaces_control_characters_and_shortens() -> None:
    from mlwatch.store.tables import printable

    assert printable("ok: a\x00b\ufffdc\x1b[31m") == "ok: a?b?c?[31m"
    long = printable("x" * 500, limit=50)
    assert len(long) == 50 and long.endswith("…")
