"""Rows streamed into a workbook by gis.xlsx_rows read back exactly as openpyxl's own cells."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from gis import export
from gis.export import write_excel
from gis.xlsx_rows import column_letters


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "问题编号": ["SPB-0001", "A&B <公司>", "=HYPERLINK(\"x\")", "  前后空格  ", None, "-3.5", "@SUM(A1)"],
        "面积": [12.5, np.nan, 0.1, 1 / 3, 1e-7, 3.0, -2.0],
        "数量": np.arange(7, dtype=np.int64),
        "发现日期": pd.to_datetime(["2025-12-01", None, "2025-12-03 08:30", "2026-01-01", "2026-02-28",
                                    "2026-03-01", "2026-03-02"], format="mixed"),
        "是否四山": [True, False, True, False, True, False, True],
        "混合": ["文本", 5, 2.5, None, "2026-01-01x", 7, "末"],
        "整改时限": ["2026-01-05", "2026-02-01", None, "2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"],
    })


def _cells(path: Path, sheet: str) -> list[tuple]:
    ws = openpyxl.load_workbook(path)[sheet]
    return [(c.coordinate, c.value, c.number_format, c.font.name, c.font.bold, c.border.left.style,
             c.quotePrefix, c.alignment.wrap_text, c.data_type)
            for row in ws.iter_rows() for c in row]


def test_streamed_rows_equal_openpyxls_own_cells(tmp_path: Path) -> None:
    df = _table()
    heads = {"问题台账": ["某区问题台账", "填报日期：2026-03-01", "样例数据"]}
    streamed = write_excel({"问题台账": df}, tmp_path / "fast.xlsx", title_rows=heads)
    # a finish callback makes write_excel build every row as an openpyxl cell: the reference
    reference = write_excel({"问题台账": df}, tmp_path / "ref.xlsx", title_rows=heads, finish=lambda wb: None)
    assert _cells(streamed, "问题台账") == _cells(reference, "问题台账")
    back = pd.read_excel(streamed, header=3)  # title, 填报 line, note, then the header
    assert len(back) == len(df) and back["问题编号"].iloc[1] == "A&B <公司>"
    assert back["发现日期"].iloc[2] == pd.Timestamp("2025-12-03 08:30")


def test_every_sheet_of_a_workbook_is_streamed_into_its_own_part(tmp_path: Path) -> None:
    a, b = _table(), pd.DataFrame({"项目": [f"第{i}项" for i in range(50)], "值": np.arange(50) * 0.5})
    path = write_excel({"甲": a, "乙": b}, tmp_path / "two.xlsx", title_rows={"乙": ["乙表"]})
    wb = openpyxl.load_workbook(path)
    assert [c.value for c in wb["甲"]["A"]][1:] == [None if pd.isna(v) else v for v in a["问题编号"]]
    assert [c.value for c in wb["乙"]["B"]][3:] == list(b["值"])
    assert wb["乙"].max_row == 3 + len(b)  # title, 填报 line, header, rows


def test_a_table_over_excels_row_limit_is_split_not_truncated(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(export, "EXCEL_MAX_ROWS", 40)
    df = pd.DataFrame({"问题编号": [f"P{i:03d}" for i in range(100)], "面积": np.arange(100.0)})
    path = write_excel({"问题台账": df}, tmp_path / "big.xlsx", title_rows={"问题台账": ["某区问题台账"]})
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["问题台账", "问题台账（2）", "问题台账（3）"]
    ids = []
    for ws in wb.worksheets:
        assert ws.max_row <= 40
        assert "部分" in str(ws["A3"].value) and ws["A1"].value == "某区问题台账"
        assert ws.print_title_rows == "$4:$4"
        ids += [ws.cell(r, 1).value for r in range(5, ws.max_row + 1)]
    assert ids == df["问题编号"].tolist()


def test_column_letters_follow_excel() -> None:
    letters = column_letters(703)
    assert letters[:3] == ["A", "B", "C"] and letters[25:28] == ["Z", "AA", "AB"]
    assert letters[701:703] == ["ZZ", "AAA"]
    assert openpyxl.utils.get_column_letter(703) == letters[-1]


@pytest.mark.parametrize("value", [dt.datetime(1900, 3, 1), dt.datetime(2026, 12, 3, 23, 59, 59)])
def test_date_serials_match_openpyxl(tmp_path: Path, value: dt.datetime) -> None:
    df = pd.DataFrame({"d": pd.to_datetime([value, value])})
    ws = openpyxl.load_workbook(write_excel({"s": df}, tmp_path / "d.xlsx"))["s"]
    assert ws["A3"].value == ws["A2"].value == value
