"""Workbooks in the official shape, read back with openpyxl: merged 黑体 title, 填报 line,
borders, fitted widths, print setup (A4 landscape, fit to width, repeated header), dates as dates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from gis.export import _display_width, write_excel


def _header_row(ws, first: str) -> int:
    return next(i for i in range(1, 8) if ws.cell(i, 1).value == first)


def _check_form(ws, *, titled: bool) -> int:
    """Assert the official shape of one sheet; return its header row."""
    ncols = ws.max_column
    if titled:
        merged = {str(r) for r in ws.merged_cells.ranges}
        assert any(r.startswith("A1:") for r in merged), merged
        title = ws["A1"]
        assert title.font.name == "黑体" and title.font.bold
        assert title.alignment.horizontal == "center"
        line = [c.value for c in ws[2] if c.value is not None]
        text = " ".join(str(v) for v in line) + " ".join(c.number_format for c in ws[2])
        for field in ("填报单位", "填报人", "联系电话", "填报日期"):
            assert field in text, text
        assert any(isinstance(v, dt.datetime) for v in line), "填报日期 must be a real date"
    h = next(i for i in range(1, 8) if ws.cell(i, 1).border.top.style == "thin")  # the table's header
    assert all(ws.cell(h, j).value is not None and ws.cell(h, j).font.bold for j in range(1, ncols + 1))
    assert ws.print_title_rows == f"${h}:${h}" or ws.print_title_rows == f"{h}:{h}"
    assert ws.page_setup.orientation == "landscape"
    assert int(ws.page_setup.paperSize) == 9  # A4
    assert ws.page_setup.fitToWidth == 1 and ws.page_setup.fitToHeight == 0
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.freeze_panes == f"A{h + 1}"
    for row in ws.iter_rows(min_row=h, max_row=ws.max_row, max_col=ncols):
        for cell in row:
            assert cell.border.left.style == "thin" and cell.border.bottom.style == "thin", cell.coordinate
            assert cell.font.name == "宋体", cell.coordinate
    for j in range(1, ncols + 1):
        letter = openpyxl.utils.get_column_letter(j)
        texts = [str(c.value) for (c,) in ws.iter_rows(min_row=h, max_row=min(ws.max_row, h + 500),
                                                       min_col=j, max_col=j) if c.value is not None
                 and not isinstance(c.value, dt.datetime)]
        need = min(max((_display_width(t) for t in texts), default=0) + 2, 60)
        assert ws.column_dimensions[letter].width >= need - 0.01, (ws.title, letter)
        assert ws.column_dimensions[letter].width <= 60
    return h


def test_write_excel_official_shape(tmp_path: Path) -> None:
    df = pd.DataFrame({"序号": [1, 2, 3], "网点名称": ["沙坪坝区某某再生资源回收站", "x", "长" * 80],
                       "整改时限": ["2026-01-05", "2026-02-01", None],
                       "发现日期": pd.to_datetime(["2025-12-01", "2025-12-02", "2025-12-03"])})
    path = write_excel({"问题台账": df, "说明": pd.DataFrame({"项目": ["a"]})}, tmp_path / "f.xlsx",
                       title_rows={"问题台账": ["某区问题台账", "填报日期：2026-03-01", "样例数据"]},
                       filing={"填报单位": "区商务委"})
    wb = openpyxl.load_workbook(path)
    ws = wb["问题台账"]
    h = _check_form(ws, titled=True)
    assert ws.merged_cells.ranges and "A1:D1" in {str(r) for r in ws.merged_cells.ranges}
    assert "区商务委" in str(ws["A2"].value)
    filed = [c.value for c in ws[2] if isinstance(c.value, dt.datetime)]
    assert filed == [dt.datetime(2026, 3, 1)]
    assert ws.cell(h + 1, 3).value == dt.datetime(2026, 1, 5) and ws.cell(h + 1, 3).number_format == "yyyy-mm-dd"
    assert ws.cell(h + 1, 4).is_date
    assert ws.cell(h + 3, 2).alignment.wrap_text  # text wider than 60 wraps
    plain = wb["说明"]
    assert plain["A1"].value == "项目"  # an untitled sheet keeps its header in row 1 (readers rely on it)
    _check_form(plain, titled=False)


def test_text_mixed_with_dates_is_left_as_text(tmp_path: Path) -> None:
    df = pd.DataFrame({"整改时限": ["2026-01-05", "立即整改"]})
    ws = openpyxl.load_workbook(write_excel({"s": df}, tmp_path / "m.xlsx"))["s"]
    assert [ws["A2"].value, ws["A3"].value] == ["2026-01-05", "立即整改"]


@pytest.fixture(scope="module")
def forms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gis import pipeline
    from gis.testing import make_tiny_project

    project = make_tiny_project(tmp_path_factory.mktemp("tiny") / "tiny")
    out = tmp_path_factory.mktemp("out")
    pipeline.run(project, out, steps=["compliance", "hotspots", "ledgers"], progress=False)
    return out


def test_every_workbook_of_a_run_has_the_official_shape(forms: Path) -> None:
    books = sorted(forms.glob("*.xlsx"))
    assert {"problem_ledger.xlsx", "summary_table.xlsx", "survey_form.xlsx"} <= {p.name for p in books}
    for path in books:
        wb = openpyxl.load_workbook(path)
        for ws in wb.worksheets:
            _check_form(ws, titled=True)


def test_ledger_deadlines_are_dates_not_before_filing_for_compliance_rows(forms: Path) -> None:
    ws = openpyxl.load_workbook(forms / "problem_ledger.xlsx")["问题台账"]
    h = _header_row(ws, "序号")
    headers = [c.value for c in ws[h]]
    col = headers.index("整改时限") + 1
    filed = next(c.value for c in ws[2] if isinstance(c.value, dt.datetime))
    values = [ws.cell(r, col).value for r in range(h + 1, ws.max_row + 1)]
    assert values and all(isinstance(v, dt.datetime) for v in values), values
    assert all(ws.cell(r, col).number_format == "yyyy-mm-dd" for r in range(h + 1, ws.max_row + 1))
    src = pd.read_excel(forms / "problem_ledger.xlsx", header=h - 1)
    assert not src["整改时限"].astype(str).str.contains("日内").any()
    assert filed.date() == dt.date.today()


def test_relative_deadlines_count_from_the_filing_date() -> None:
    from gis.ledgers import _deadlines_from

    led = pd.DataFrame({"整改时限": ["30日内", "2026-05-01", "15日内", None]})
    out = _deadlines_from(led, "2026-03-01")
    assert out["整改时限"].tolist()[:3] == ["2026-03-31", "2026-05-01", "2026-03-16"]
    assert pd.isna(out["整改时限"].iloc[3])
